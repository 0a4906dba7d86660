import numpy as np
import pytest

from bioseg.data.dataset import LoadedSample, PatchDataset, pad_to
from bioseg.data.preprocess import dataset_percentiles, map_mask, normalize, select_channels
from bioseg.errors import BiosegError


def test_select_channels_checks_counts():
    img = np.arange(3 * 4 * 5).reshape(3, 4, 5)
    assert select_channels(img, [2, 0], 2, "x").shape == (2, 4, 5)
    assert select_channels(img, None, 3, "x").shape == (3, 4, 5)
    with pytest.raises(BiosegError, match="expects 1"):
        select_channels(img, None, 1, "x.png")
    with pytest.raises(BiosegError, match="index 5"):
        select_channels(img, [5], 1, "x.png")


@pytest.mark.parametrize("shape", [(1, 33, 34), (2, 17, 18, 19)])
def test_per_image_normalisation_maps_percentiles_to_0_1(shape):
    rng = np.random.default_rng(0)
    img = rng.normal(100, 20, shape).astype(np.float32)
    out = normalize(img, "per_image", (1, 99))
    for c in range(shape[0]):
        lo, hi = np.percentile(out[c], (1, 99))
        assert lo == pytest.approx(0, abs=1e-4) and hi == pytest.approx(1, abs=1e-4)


def test_dataset_normalisation_uses_saved_values():
    img = np.full((2, 4, 4), 10, np.uint8)
    out = normalize(img, "dataset", low=[0, 10], high=[20, 30])
    assert out.dtype == np.float32
    assert np.allclose(out[0], 0.5) and np.allclose(out[1], 0.0)
    with pytest.raises(BiosegError, match="one value per channel"):
        normalize(img, "dataset", low=[0], high=[1])


def test_dataset_percentiles_per_channel():
    a = np.stack([np.arange(100.0).reshape(10, 10), np.full((10, 10), 7.0)])
    low, high = dataset_percentiles([a, a], (0, 100))
    assert low == [0.0, 7.0] and high == [99.0, 7.0]


def test_map_mask_with_and_without_mapping():
    raw = np.array([[0, 255], [255, 0]], np.uint8)
    assert map_mask(raw, {0: 1, 255: 0}, 2, "m").tolist() == [[1, 0], [0, 1]]
    with pytest.raises(BiosegError, match=r"mask_values"):
        map_mask(raw, None, 2, "m.png")
    with pytest.raises(BiosegError, match=r"\[7\]"):
        map_mask(np.array([[7, 0]]), {0: 0}, 2, "m.png")


def test_pad_to_mirrors_even_when_much_smaller():
    a = np.arange(6).reshape(1, 2, 3)
    out = pad_to(a, (7, 8))
    assert out.shape == (1, 7, 8)
    assert np.array_equal(out[:, :2, :3], a)


def _samples(spatial):
    rng = np.random.default_rng(1)
    mask = np.zeros(spatial, np.int64)
    mask[(slice(2, 5),) * len(spatial)] = 1
    return [LoadedSample("a", rng.random((1, *spatial), dtype=np.float32), {"mask": mask})]


@pytest.mark.parametrize(
    "spatial, patch", [((33, 34), (16, 16)), ((17, 18, 19), (8, 8, 8)), ((10, 12), (16, 16))]
)
def test_patch_dataset_shapes_and_determinism(spatial, patch):
    ds = PatchDataset(_samples(spatial), patch, patches_per_epoch=5, foreground_fraction=0.5, seed=3)
    item = ds[2]
    assert item["image"].shape == (1, *patch) and item["target/mask"].shape == (1, *patch)
    assert np.array_equal(ds[2]["image"], item["image"])
    if all(s > p for s, p in zip(spatial, patch, strict=True)):  # else only one crop exists
        ds.set_epoch(1)
        assert not np.array_equal(ds[2]["image"], item["image"])


def test_foreground_fraction_one_centres_on_objects():
    ds = PatchDataset(_samples((64, 64)), (8, 8), patches_per_epoch=20, foreground_fraction=1.0, seed=0)
    assert all(ds[i]["target/mask"].sum() > 0 for i in range(20))


def test_per_image_patches_take_item_i_from_image_i():
    """Private training samples images: one item per image, item i cut from image i."""
    rng = np.random.default_rng(0)
    samples = [
        LoadedSample(f"s{k}", np.full((1, 20, 20), float(k), np.float32), {"mask": rng.integers(0, 2, (20, 20))})
        for k in range(3)
    ]
    ds = PatchDataset(samples, (8, 8), patches_per_epoch=50, seed=0, per_image=True)
    assert len(ds) == 3
    assert [float(ds[k]["image"].max()) for k in range(3)] == [0.0, 1.0, 2.0]
