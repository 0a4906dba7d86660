"""Procedural 3D volumes: determinism, shapes, labels, touching cells, walls on label borders."""

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from bioseg.demos.cells3d import make_cells_3d, write_cells_3d_dataset
from bioseg.errors import BiosegError
from bioseg.io import read_image, read_mask, read_voxel_size

SMALL = (17, 40, 41)
KINDS = ["membrane", "nuclei"]


def _borders(labels: np.ndarray) -> np.ndarray:
    """Labelled voxels with a face neighbour of another label (another cell or background)."""
    border = np.zeros(labels.shape, bool)
    for axis in range(3):
        differ = np.diff(labels, axis=axis) != 0
        lo, hi = [slice(None)] * 3, [slice(None)] * 3
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        border[tuple(lo)] |= differ
        border[tuple(hi)] |= differ
    return border & (labels > 0)


def _touching_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    pairs = set()
    for axis in range(3):
        a = np.moveaxis(labels, axis, 0)
        lo, hi = a[:-1].ravel(), a[1:].ravel()
        both = (lo != hi) & (lo > 0) & (hi > 0)
        pairs |= {(int(min(p, q)), int(max(p, q))) for p, q in zip(lo[both], hi[both], strict=True)}
    return pairs


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_gives_identical_arrays_and_other_seeds_differ(kind):
    a_img, a_lab = make_cells_3d(SMALL, seed=5, n_cells=(6, 10), kind=kind)
    b_img, b_lab = make_cells_3d(SMALL, seed=5, n_cells=(6, 10), kind=kind)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    c_img, c_lab = make_cells_3d(SMALL, seed=6, n_cells=(6, 10), kind=kind)
    assert not np.array_equal(a_img, c_img) and not np.array_equal(a_lab, c_lab)


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_dtypes_and_sequential_connected_labels(kind):
    image, labels = make_cells_3d(SMALL, seed=1, n_cells=(6, 10), kind=kind)
    assert image.shape == labels.shape == SMALL
    assert image.dtype == np.uint8 and labels.dtype == np.uint16
    ids = np.unique(labels)
    np.testing.assert_array_equal(ids, np.arange(ids.size))  # 0 and 1..N without gaps
    assert 3 <= ids.size - 1 <= 10
    assert 0 < (labels > 0).mean() < 1  # background and objects both present
    for cell, box in enumerate(ndi.find_objects(labels), start=1):
        _, pieces = ndi.label(labels[box] == cell)
        assert pieces == 1, f"label {cell} is in {pieces} pieces"


def test_uint16_output_is_12_bit():
    image, _ = make_cells_3d(SMALL, seed=2, n_cells=(5, 5), dtype=np.uint16)
    assert image.dtype == np.uint16 and 255 < image.max() <= 4095


@pytest.mark.parametrize("kind", KINDS)
def test_touching_cells_exist(kind):
    _, labels = make_cells_3d((20, 64, 64), seed=3, n_cells=(10, 14), kind=kind)
    assert len(_touching_pairs(labels)) >= (10 if kind == "membrane" else 1)


def test_membrane_cells_tile_the_tissue():
    _, labels = make_cells_3d(SMALL, seed=4, n_cells=(8, 12))
    # every cell touches another cell: no isolated cell inside the tissue
    touching = {c for pair in _touching_pairs(labels) for c in pair}
    assert touching == set(range(1, int(labels.max()) + 1))
    # the tissue is one solid piece: background does not leak between cells
    _, pieces = ndi.label(labels > 0)
    assert pieces == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_membranes_lie_on_label_borders(seed):
    image, labels = make_cells_3d((20, 48, 50), seed=seed, n_cells=(8, 12))
    border = _borders(labels)
    # interior: inside cells and at least 1 plane / 2 pixels away from any border voxel
    interior = (labels > 0) & ~ndi.binary_dilation(border, structure=np.ones((3, 5, 5), bool))
    on, off = image[border].astype(float), image[interior].astype(float)
    assert border.sum() > 1000 and interior.sum() > 1000
    assert np.median(on) > 1.5 * np.median(off)
    assert (on > np.percentile(off, 75)).mean() > 0.7  # most of the walls are bright; some are weak


def test_nuclei_are_brighter_than_background():
    image, labels = make_cells_3d(SMALL, seed=8, n_cells=(5, 8), kind="nuclei")
    far = ~ndi.binary_dilation(labels > 0, structure=np.ones((3, 7, 7), bool))
    assert np.median(image[labels > 0]) > np.median(image[far]) + 20


def test_intensity_falls_off_with_depth():
    top, bottom = [], []
    for seed in range(3):
        image, labels = make_cells_3d((24, 64, 64), seed=seed, n_cells=(8, 12))
        border = _borders(labels)
        top.append(image[:6][border[:6]].mean())
        bottom.append(image[-6:][border[-6:]].mean())
    assert np.mean(bottom) < 0.9 * np.mean(top)


def test_anisotropy_flattens_objects_in_voxels():
    def z_over_y(anisotropy: float) -> float:
        ratios = []
        for kind in KINDS:
            _, labels = make_cells_3d((32, 64, 64), seed=9, n_cells=(8, 8), kind=kind, anisotropy=anisotropy)
            ratios += [(b[0].stop - b[0].start) / (b[1].stop - b[1].start) for b in ndi.find_objects(labels)]
        return float(np.median(ratios))

    iso, aniso = z_over_y(1.0), z_over_y(2.0)
    assert 0.7 < iso < 1.4
    assert 0.35 < aniso / iso < 0.7


def test_zero_cells_gives_empty_labels():
    for kind in KINDS:
        image, labels = make_cells_3d(SMALL, seed=0, n_cells=(0, 0), kind=kind)
        assert image.shape == SMALL and not labels.any()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"shape": (3, 40, 40)}, "not a 3D volume size"),
        ({"shape": (40, 40)}, "not a 3D volume size"),
        ({"kind": "cytoplasm"}, "membrane, nuclei"),
        ({"n_cells": (9, 3)}, "n_cells"),
        ({"anisotropy": 0.0}, "anisotropy"),
        ({"dtype": np.float32}, "dtype"),
    ],
)
def test_bad_arguments(kwargs, message):
    kwargs = {"shape": SMALL, **kwargs}
    with pytest.raises(BiosegError, match=message):
        make_cells_3d(seed=0, **kwargs)


def test_write_dataset_round_trips_through_io(tmp_path):
    out = write_cells_3d_dataset(tmp_path / "ds", 2, (9, 33, 34), seed=3, kind="nuclei", anisotropy=2.5)
    images = sorted((out / "images").glob("*.tif"))
    masks = sorted((out / "masks").glob("*.tif"))
    assert [p.name for p in images] == [p.name for p in masks] == ["cell_000.tif", "cell_001.tif"]
    volume = read_image(images[0], spatial_dims=3)
    labels = read_mask(masks[0], spatial_dims=3)
    assert volume.shape == (1, 9, 33, 34) and labels.shape == (9, 33, 34) and labels.dtype == np.uint16
    assert read_voxel_size(images[0]) == pytest.approx((2.5, 1.0, 1.0))
    with tifffile.TiffFile(images[0]) as tif:  # an independent reader sees a ZYX ImageJ stack
        assert tif.is_imagej and tif.series[0].axes == "ZYX"
    # the two volumes differ, and reproduce from the same seed
    assert not np.array_equal(read_mask(masks[0], spatial_dims=3), read_mask(masks[1], spatial_dims=3))
    again = write_cells_3d_dataset(tmp_path / "again", 2, (9, 33, 34), seed=3, kind="nuclei", anisotropy=2.5)
    repeat = tifffile.imread(again / "images" / images[1].name)
    np.testing.assert_array_equal(repeat, tifffile.imread(images[1]))
