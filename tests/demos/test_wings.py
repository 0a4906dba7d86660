"""Procedural wings: determinism, masks and their geometry, appearance, speed, and the written layout."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from bioseg.demos.wings import HEADS, make_wing, write_wing_dataset
from bioseg.errors import BiosegError

SEEDS = range(12)


@pytest.fixture(scope="module")
def wings() -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    # Half square, half non-square, so that no axis order mix-up goes unnoticed.
    return [make_wing((96, 128) if s % 2 else (160, 160), seed=s) for s in SEEDS]


def test_same_seed_same_arrays_and_other_seed_differs() -> None:
    image, masks = make_wing((64, 80), seed=3)
    again, masks_again = make_wing((64, 80), seed=3)
    np.testing.assert_array_equal(image, again)
    for head in masks:
        np.testing.assert_array_equal(masks[head], masks_again[head])
    other, other_masks = make_wing((64, 80), seed=4)
    assert not np.array_equal(image, other)
    assert not np.array_equal(masks["wing"], other_masks["wing"])


def test_shapes_dtypes_and_values(wings) -> None:
    for s, (image, masks) in zip(SEEDS, wings, strict=True):
        shape = (96, 128) if s % 2 else (160, 160)
        assert image.shape == (*shape, 3) and image.dtype == np.uint8
        assert list(masks) == ["wing", "veins", "spots", "domains"] == list(HEADS)
        for head, mask in masks.items():
            assert mask.shape == shape and mask.dtype == np.uint8, head
        wing = masks["wing"].astype(bool)
        for head in ("wing", "veins", "spots"):
            assert set(np.unique(masks[head])) == {0, 1}, head
        np.testing.assert_array_equal(masks["domains"] > 0, wing)
        assert not (masks["veins"].astype(bool) & ~wing).any()
        assert not (masks["spots"].astype(bool) & ~wing).any()
        # fully inside the image, and a sizeable part of it
        assert not (wing[0].any() or wing[-1].any() or wing[:, 0].any() or wing[:, -1].any())
        assert 0.05 < wing.mean() < 0.6


def test_wing_is_one_elongated_solid_shape(wings) -> None:
    for _, masks in wings:
        wing = masks["wing"].astype(bool)
        _, count = ndi.label(wing)
        assert count == 1
        assert ndi.binary_fill_holes(wing).sum() == wing.sum()
        yy, xx = np.nonzero(wing)
        low, high = np.linalg.eigvalsh(np.cov(np.stack([yy, xx])))
        assert np.sqrt(high / low) > 2.0  # length over width, from the second moments


def test_orientation_and_scale_vary(wings) -> None:
    angles, areas = [], []
    for _, masks in wings:
        yy, xx = np.nonzero(masks["wing"])
        values, vectors = np.linalg.eigh(np.cov(np.stack([yy, xx])))
        angles.append(np.degrees(np.arctan2(vectors[0, 1], vectors[1, 1])) % 180)
        areas.append(masks["wing"].mean())
    assert np.ptp(angles) > 60 and max(areas) > 1.3 * min(areas)


def test_veins_are_thin_and_form_a_network(wings) -> None:
    largest_share = []
    for _, masks in wings:
        veins = masks["veins"].astype(bool)
        assert 0.02 < veins.sum() / masks["wing"].sum() < 0.3
        # A pixel with no vein-free pixel within 2 px lies in a blob thicker than 4 px: only where
        # veins meet (the stems all leave one point at the base).
        deep = ndi.binary_erosion(veins, structure=np.ones((5, 5), bool), border_value=1)
        assert deep.sum() <= 0.08 * veins.sum()
        labels, _ = ndi.label(veins, structure=np.ones((3, 3), bool))
        largest_share.append(np.bincount(labels.ravel())[1:].max() / veins.sum())
    assert np.median(largest_share) > 0.9  # mostly one connected, branching network


def test_spots_are_small_and_few(wings) -> None:
    for image, masks in wings:
        spots = masks["spots"].astype(bool)
        labels, count = ndi.label(spots)
        assert 1 <= count <= 8
        sizes = np.bincount(labels.ravel())[1:]
        assert sizes.max() <= 0.004 * spots.size
        assert spots.sum() < 0.08 * masks["wing"].sum()
        # dark: clearly below the membrane around them
        grey = image.astype(np.float64).mean(-1)
        ring = ndi.binary_dilation(spots, iterations=4) & ~ndi.binary_dilation(spots, iterations=2)
        ring &= masks["wing"].astype(bool)
        assert grey[ring].mean() - grey[spots].mean() > 25


def test_domain_counts_and_look() -> None:
    for n in (1, 2, 3, 4):
        image, masks = make_wing((96, 128), seed=10 + n, n_domains=n)
        assert sorted(np.unique(masks["domains"])) == list(range(n + 1))
        means = [image[masks["domains"] == k].astype(np.float64).mean(0) for k in range(1, n + 1)]
        for a, b in zip(means, means[1:], strict=False):
            assert np.abs(a - b).sum() > 20  # neighbouring domains differ in colour
    drawn = {int(make_wing((64, 64), seed=s)[1]["domains"].max()) for s in range(30)}
    assert drawn == {2, 3, 4}
    for bad in (0, 7, 2.5, True):
        with pytest.raises(BiosegError, match="n_domains"):
            make_wing((64, 64), seed=0, n_domains=bad)


def test_wing_and_veins_visible_in_the_image(wings) -> None:
    for image, masks in wings:
        wing = masks["wing"].astype(bool)
        outside = ndi.binary_dilation(wing, iterations=5) & ~ndi.binary_dilation(wing, iterations=2)
        assert np.abs(image[wing].mean(0) - image[outside].mean(0).astype(np.float64)).sum() > 40
        veins = masks["veins"].astype(bool) & ~ndi.binary_dilation(masks["spots"].astype(bool), iterations=2)
        beside = ndi.binary_dilation(veins, iterations=2) & ~veins & wing
        grey = image.astype(np.float64).mean(-1)
        assert abs(grey[beside].mean() - grey[veins].mean()) > 3  # low contrast, but there


def test_write_dataset_layout(tmp_path: Path) -> None:
    root = write_wing_dataset(tmp_path / "wings", 10, size=(64, 80), seed=7)
    assert root == tmp_path / "wings"
    counts = {part: len(list((root / part / "images").glob("*.jpg"))) for part in ("train", "val", "test")}
    assert counts == {"train": 7, "val": 2, "test": 1}
    names = sorted(p.stem for part in counts for p in (root / part / "images").glob("*.jpg"))
    assert names == [f"wing_{i:03d}" for i in range(10)]
    for part in counts:
        for image_path in (root / part / "images").glob("*.jpg"):
            image = iio.imread(image_path)
            assert image.shape == (64, 80, 3) and image.dtype == np.uint8
            for head in HEADS:
                mask = tifffile.imread(root / part / "masks" / head / f"{image_path.stem}_seg_{head}.tif")
                assert mask.shape == (64, 80) and mask.dtype == np.uint8
    # Reproducible: the same call writes the same masks.
    again = write_wing_dataset(tmp_path / "again", 10, size=(64, 80), seed=7)
    a = tifffile.imread(root / "test" / "masks" / "veins" / "wing_009_seg_veins.tif")
    b = tifffile.imread(again / "test" / "masks" / "veins" / "wing_009_seg_veins.tif")
    np.testing.assert_array_equal(a, b)
    # JPEG at quality 95 stays close to the generated pixels.
    seed = int(np.random.SeedSequence(7).generate_state(10)[0])
    original, masks = make_wing((64, 80), seed=seed)
    written = tifffile.imread(root / "train" / "masks" / "domains" / "wing_000_seg_domains.tif")
    np.testing.assert_array_equal(written, masks["domains"])
    assert np.abs(iio.imread(root / "train/images/wing_000.jpg").astype(int) - original).mean() < 4


def test_write_dataset_discovered_as_multitask(tmp_path: Path) -> None:
    from bioseg.data.layouts import discover

    root = write_wing_dataset(tmp_path, 4, size=(32, 32), seed=1, split=(0.5, 0.25, 0.25))
    index = discover(root)
    assert index.layout == "multitask" and len(index.samples) == 4 and not index.problems
    assert all(set(sample.masks) == set(HEADS) for sample in index.samples)
    assert {part: len(names) for part, names in index.presplit.items()} == {"train": 2, "val": 1, "test": 1}


def test_small_datasets_and_bad_arguments(tmp_path: Path) -> None:
    root = write_wing_dataset(tmp_path / "two", 2, size=(32, 32), split=(0.7, 0.15, 0.15))
    assert len(list((root / "train" / "images").iterdir())) == 1
    assert len(list((root / "val" / "images").iterdir())) == 1
    assert not (root / "test").exists()
    root = write_wing_dataset(tmp_path / "all", 3, size=(32, 32), split=(1, 0, 0))
    assert len(list((root / "train" / "images").iterdir())) == 3 and not (root / "val").exists()
    for bad in ((0.5, 0.5), (0.8, 0.3, -0.1), (0.5, 0.2, 0.2), "abc"):
        with pytest.raises(BiosegError, match="split"):
            write_wing_dataset(tmp_path / "bad", 3, split=bad)
    for n in (0, 2.5, True):
        with pytest.raises(BiosegError, match="n="):
            write_wing_dataset(tmp_path / "bad", n)
    with pytest.raises(BiosegError, match="size"):
        make_wing((4, 4), seed=0)
