"""Object sizes: equivalent diameters, and the depth diameter that rescaled prediction compares."""

import numpy as np
import pytest

from bioseg.data.object_sizes import depth_diameter, equivalent_diameters, training_object_sizes


def discs(radius: float, shape=(256, 256), n: int = 12, seed: int = 0, dims: int = 2) -> np.ndarray:
    """Instance labels of ``n`` non-touching discs (balls) of ``radius`` at random places."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape if dims == 2 else shape[:1] * 3).astype(np.float64)
    labels = np.zeros(grid.shape[1:], np.int32)
    placed = 0
    for _ in range(2000):
        centre = rng.uniform(radius + 1, np.array(labels.shape) - radius - 1)
        inside = ((grid - centre.reshape(-1, *([1] * dims))) ** 2).sum(0) <= radius**2
        grown = ((grid - centre.reshape(-1, *([1] * dims))) ** 2).sum(0) <= (radius + 2) ** 2
        if not labels[grown].any():
            placed += 1
            labels[inside] = placed
        if placed == n:
            break
    return labels


@pytest.mark.parametrize("radius", [3.0, 6.0, 9.0, 12.0, 18.0])
def test_depth_diameter_reads_the_diameter_of_discs_within_10_percent(radius):
    labels = discs(radius)
    assert depth_diameter(labels > 0) == pytest.approx(2 * radius, rel=0.1)
    assert np.median(equivalent_diameters(labels)) == pytest.approx(2 * radius, rel=0.1)


@pytest.mark.parametrize("radius", [3.0, 5.0, 8.0])
def test_depth_diameter_of_balls(radius):
    labels = discs(radius, shape=(48,), n=6, dims=3)
    assert depth_diameter(labels > 0) == pytest.approx(2 * radius, rel=0.1)


def test_touching_objects_keep_their_depth_diameter():
    labels = discs(8.0)
    apart = depth_diameter(labels > 0)
    # two discs touching side by side: the joined blob has nearly the depth of either
    yy, xx = np.indices((64, 96))
    pair = ((yy - 32) ** 2 + (xx - 32) ** 2 <= 64) | ((yy - 32) ** 2 + (xx - 48) ** 2 <= 64)
    assert depth_diameter(pair) == pytest.approx(apart, rel=0.15)


def test_empty_masks_have_no_size():
    assert depth_diameter(np.zeros((10, 10), bool)) is None
    assert training_object_sizes([np.zeros((10, 10), int)], instance=True) is None


def test_training_sizes_pool_masks_and_give_physical_units():
    masks = [discs(6.0, seed=0), discs(6.0, seed=1)]
    sizes = training_object_sizes(masks, instance=True, spacing=(0.5, 0.5))
    assert sizes["count"] == 24
    assert sizes["diameter_px"]["median"] == pytest.approx(12, rel=0.1)
    assert sizes["diameter_um"] == pytest.approx(sizes["diameter_px"]["median"] * 0.5, rel=1e-3)
    assert sizes["depth_diameter_px"]["median"] == pytest.approx(12, rel=0.1)


def test_depth_diameters_spread_over_masks_of_several_magnifications():
    sizes = training_object_sizes([discs(r, seed=i) for i, r in enumerate((4.0, 6.0, 8.0, 10.0, 12.0))], True)
    depth = sizes["depth_diameter_px"]
    assert depth["p10"] < 10 < depth["median"] < 18 < depth["p90"]  # one per mask, not pooled


def test_semantic_masks_count_connected_components():
    semantic = (discs(5.0) > 0).astype(np.uint8) * 2  # class 2 everywhere an object is
    assert training_object_sizes([semantic], instance=False)["count"] == 12
