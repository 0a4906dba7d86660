import imageio.v3 as iio
import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from bioseg.demos.cells2d import make_cells_2d, write_cells_dataset
from bioseg.errors import BiosegError


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_same_seed_gives_identical_arrays_and_other_seeds_differ():
    a_img, a_mask = make_cells_2d((65, 70), seed=3)
    b_img, b_mask = make_cells_2d((65, 70), seed=3)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_mask, b_mask)
    c_img, _ = make_cells_2d((65, 70), seed=4)
    assert not np.array_equal(a_img, c_img)


def test_shapes_dtypes_and_mask_values():
    image, mask = make_cells_2d((67, 93), seed=1)
    assert image.shape == mask.shape == (67, 93)
    assert image.dtype == np.uint8 and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1}
    assert 0 < mask.mean() < 1


def test_instances_are_sequential_uint16_and_match_the_binary_mask():
    _, mask = make_cells_2d(seed=7)
    image, labels = make_cells_2d(seed=7, instances=True)
    assert labels.dtype == np.uint16 and labels.shape == (256, 256)
    ids = np.unique(labels)
    np.testing.assert_array_equal(ids, np.arange(ids.size))
    # default n_cells=(8, 20); no cell is fully covered by others for this seed
    assert 8 <= ids.size - 1 <= 20
    np.testing.assert_array_equal(labels > 0, mask.astype(bool))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_touching_cells_merge_in_the_binary_mask(seed):
    _, labels = make_cells_2d(seed=seed, instances=True)
    components, n = ndi.label(labels > 0)
    cells_per_component = [np.unique(labels[components == c]).size for c in range(1, n + 1)]
    assert max(cells_per_component) > 1


def test_cells_are_brighter_than_their_surroundings():
    image, labels = make_cells_2d(seed=11, dim_fraction=0.5, instances=True)
    foreground = labels > 0
    for cell in range(1, labels.max() + 1):
        inside = labels == cell
        ring = ndi.binary_dilation(inside, iterations=6) & ~ndi.binary_dilation(foreground, iterations=2)
        if ring.sum() < 20:  # buried in a cluster
            continue
        assert image[inside].mean() > image[ring].mean() + 5, cell


def test_global_otsu_is_clearly_imperfect_but_far_from_useless():
    scores = []
    for seed in range(100, 104):
        image, mask = make_cells_2d(seed=seed)
        scores.append(_dice(image > threshold_otsu(image), mask > 0))
    assert np.mean(scores) < 0.95
    assert min(scores) > 0.5


def test_zero_cells_gives_an_empty_mask():
    image, labels = make_cells_2d((33, 34), seed=0, n_cells=(0, 0), instances=True)
    assert image.shape == (33, 34) and not labels.any()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": (5, 40)},
        {"size": (10, 10, 10)},
        {"n_cells": (5, 2)},
        {"radius": (0, 3)},
        {"dim_fraction": 1.5},
    ],
)
def test_bad_arguments_raise_bioseg_error(kwargs):
    with pytest.raises(BiosegError):
        make_cells_2d(seed=0, **kwargs)


def test_write_cells_dataset_layout_and_reproducibility(tmp_path):
    out = write_cells_dataset(tmp_path / "a", 3, size=(40, 45), seed=5)
    assert out == tmp_path / "a"
    names = sorted(p.name for p in (out / "images").iterdir())
    assert names == ["cell_000.png", "cell_001.png", "cell_002.png"]
    assert sorted(p.name for p in (out / "masks").iterdir()) == names
    images = [iio.imread(out / "images" / n) for n in names]
    for name, image in zip(names, images, strict=True):
        mask = iio.imread(out / "masks" / name)
        assert image.shape == mask.shape == (40, 45)
        assert image.dtype == mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1}
    assert not np.array_equal(images[0], images[1])
    again = write_cells_dataset(tmp_path / "b", 3, size=(40, 45), seed=5)
    for name in names:
        np.testing.assert_array_equal(iio.imread(again / "images" / name), iio.imread(out / "images" / name))
    with pytest.raises(BiosegError):
        write_cells_dataset(tmp_path / "c", 0)
