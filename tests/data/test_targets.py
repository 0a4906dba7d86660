import math
import time

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.morphology import dilation, erosion
from skimage.segmentation import find_boundaries

from bioseg.data.targets import (
    boundary_target,
    class_balance_weights,
    foreground_boundary_target,
    three_class_target,
)
from bioseg.data.weight_map import default_max_distance, object_distances, unet_weight_map
from bioseg.errors import BiosegError

SHAPES = {2: (33, 34), 3: (17, 18, 19)}


def cells(shape, n, radius, seed=0):
    """Voronoi cells around random seeds, cut to ``radius``: touching objects, gaps and background."""
    rng = np.random.default_rng(seed)
    points = np.stack([rng.integers(0, s, n) for s in shape], axis=1)
    not_seed = np.ones(shape, bool)
    not_seed[tuple(points.T)] = False
    ids = np.zeros(shape, np.int32)
    ids[tuple(points.T)] = np.arange(1, n + 1)
    dist, nearest = ndi.distance_transform_edt(not_seed, return_indices=True)
    labels = ids[tuple(nearest)]
    labels[dist > radius] = 0
    return labels


def brute_force_distances(labels, spacing=None):
    """d1, d2 from one whole-image distance transform per object (the slow, obvious way)."""
    ids = [i for i in np.unique(labels) if i != 0]
    stack = np.stack([ndi.distance_transform_edt(labels != i, sampling=spacing) for i in ids])
    stack.sort(axis=0)
    return stack[0], stack[1]


def brute_force_weights(labels, w0, sigma, spacing=None, truncate=math.inf):
    fg = labels != 0
    n, n_fg = labels.size, fg.sum()
    w_c = np.where(fg, n / (2 * n_fg), n / (2 * (n - n_fg)))
    d1, d2 = brute_force_distances(labels, spacing)
    total = d1 + d2
    term = w0 * np.exp(-(total**2) / (2 * sigma**2))
    return w_c + np.where(total <= truncate, term, 0.0)


# --- boundaries ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("mode", ["thick", "inner", "outer"])
def test_boundaries_match_skimage(ndim, mode):
    shape = SHAPES[ndim]
    rng = np.random.default_rng(ndim)
    dense = cells(shape, 12, 4.0, seed=ndim)
    noisy = (rng.integers(0, 5, shape) * (rng.random(shape) > 0.3)).astype(np.uint16)  # every pixel a border
    for labels in (dense, noisy, dense > 0):
        for connectivity in range(1, ndim + 1):
            ours = boundary_target(labels, connectivity=connectivity, mode=mode)
            ref = find_boundaries(labels, connectivity=connectivity, mode=mode)
            assert ours.dtype == np.uint8 and ours.shape == shape
            np.testing.assert_array_equal(ours, ref.astype(np.uint8))


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("width", [2, 3])
def test_wide_boundaries(ndim, width):
    labels = cells(SHAPES[ndim], 10, 5.0, seed=3)
    fg = labels != 0
    for connectivity in (1, ndim):
        footprint = ndi.iterate_structure(ndi.generate_binary_structure(ndim, connectivity), width)
        # Independent reference: another label within `width` steps (max != min over that footprint).
        near_other = dilation(labels, footprint) != erosion(labels, footprint)
        kw = dict(connectivity=connectivity, width=width)
        thick = boundary_target(labels, mode="thick", **kw).astype(bool)
        inner = boundary_target(labels, mode="inner", **kw).astype(bool)
        outer = boundary_target(labels, mode="outer", **kw).astype(bool)
        np.testing.assert_array_equal(thick, near_other)
        np.testing.assert_array_equal(inner, near_other & fg)
        np.testing.assert_array_equal(outer & ~fg, near_other & ~fg)
        assert not (outer & ~thick).any()
        # Object pixels in "outer" only near a contact between two objects.
        contact = find_boundaries(labels, connectivity=ndim, mode="outer") & fg
        structure = ndi.generate_binary_structure(ndim, connectivity)
        near_contact = ndi.binary_dilation(contact, structure, width - 1)
        assert not (outer & fg & ~near_contact).any()
        narrower = boundary_target(labels, mode="thick", connectivity=connectivity, width=width - 1)
        assert (thick >= narrower.astype(bool)).all() and thick.sum() > narrower.sum()


def test_foreground_boundary_and_three_class_targets():
    labels = cells(SHAPES[3], 10, 4.0, seed=1)
    two = foreground_boundary_target(labels, connectivity=2, mode="inner")
    assert two.shape == (2, *labels.shape) and two.dtype == np.uint8
    np.testing.assert_array_equal(two[0], labels > 0)
    np.testing.assert_array_equal(two[1], find_boundaries(labels, connectivity=2, mode="inner"))

    three = three_class_target(labels)
    inner = find_boundaries(labels, mode="inner")
    assert three.dtype == np.uint8 and set(np.unique(three)) == {0, 1, 2}
    np.testing.assert_array_equal(three == 0, labels == 0)  # inner boundaries leave the background alone
    np.testing.assert_array_equal(three == 2, inner)
    np.testing.assert_array_equal(three == 1, (labels > 0) & ~inner)
    thick = three_class_target(labels, mode="thick")
    np.testing.assert_array_equal(thick == 2, find_boundaries(labels, mode="thick"))


def test_boundary_input_errors():
    labels = np.zeros((5, 6), np.int32)
    with pytest.raises(BiosegError, match="integer"):
        boundary_target(labels.astype(np.float32))
    with pytest.raises(BiosegError, match="negative"):
        boundary_target(labels - 1)
    with pytest.raises(BiosegError, match="valid: thick, inner, outer"):
        boundary_target(labels, mode="subpixel")
    with pytest.raises(BiosegError, match="1..2"):
        boundary_target(labels, connectivity=3)
    with pytest.raises(BiosegError, match="width"):
        boundary_target(labels, width=0)


# --- class balance ------------------------------------------------------------------------------------


def test_class_balance_weights():
    mask = np.zeros((20, 30), np.uint8)
    mask[:5] = 1  # 150 px
    mask[5:6, :10] = 7  # 10 px, class ids need not be contiguous
    w = class_balance_weights(mask)
    assert w.dtype == np.float32 and w.shape == mask.shape
    assert w.mean() == pytest.approx(1.0, abs=1e-6)
    totals = [w[mask == c].sum() for c in (0, 1, 7)]
    np.testing.assert_allclose(totals, w.size / 3, rtol=1e-5)  # each class carries the same weight
    assert w[mask == 7][0] / w[mask == 1][0] == pytest.approx(15.0)  # inverse frequency
    np.testing.assert_allclose(class_balance_weights(mask.astype(np.float32) - 3), w)  # any values
    np.testing.assert_array_equal(class_balance_weights(np.ones((4, 5), bool)), 1.0)


# --- distances and weight map -------------------------------------------------------------------------


@pytest.mark.parametrize("ndim", [2, 3])
def test_object_distances_match_brute_force(ndim):
    labels = cells(SHAPES[ndim], 25, 4.0, seed=ndim)
    ref1, ref2 = brute_force_distances(labels)
    d1, d2 = object_distances(labels)  # no truncation
    np.testing.assert_allclose(d1, ref1, atol=1e-9)
    np.testing.assert_allclose(d2, ref2, atol=1e-9)
    d1, d2 = object_distances(labels, max_distance=5.0)
    np.testing.assert_array_equal(d1, np.where(ref1 <= 5.0, ref1, np.inf))
    np.testing.assert_array_equal(d2, np.where(ref2 <= 5.0, ref2, np.inf))


@pytest.mark.parametrize("ndim", [2, 3])
def test_weight_map_matches_brute_force(ndim):
    labels = cells(SHAPES[ndim], 30 if ndim == 2 else 20, 4.0, seed=10 + ndim)
    assert len(np.unique(labels)) - 1 >= 15
    w0, sigma = 10.0, 2.0
    exact = unet_weight_map(labels, w0=w0, sigma=sigma, max_distance=math.inf)
    assert exact.dtype == np.float32
    np.testing.assert_allclose(exact, brute_force_weights(labels, w0, sigma), atol=1e-4)

    truncate = default_max_distance(sigma)
    assert w0 * math.exp(-(truncate**2) / (2 * sigma**2)) == pytest.approx(1e-4 * w0)
    fast = unet_weight_map(labels, w0=w0, sigma=sigma)
    np.testing.assert_allclose(fast, brute_force_weights(labels, w0, sigma, truncate=truncate), atol=1e-4)
    assert np.abs(fast - exact).max() <= 1e-4 * w0 + 1e-6
    assert (exact - fast).max() > 0  # the truncation did drop something
    np.testing.assert_array_equal(unet_weight_map(labels, w0=w0, sigma=sigma, workers=2), fast)


def test_weight_map_with_anisotropic_spacing_matches_brute_force():
    labels = cells(SHAPES[3], 15, 4.0, seed=5)
    spacing = (2.0, 0.7, 1.0)
    w = unet_weight_map(labels, w0=5.0, sigma=3.0, spacing=spacing, max_distance=math.inf)
    np.testing.assert_allclose(w, brute_force_weights(labels, 5.0, 3.0, spacing), atol=1e-4)
    assert np.abs(w - unet_weight_map(labels, w0=5.0, sigma=3.0, max_distance=math.inf)).max() > 0.1


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (2.0, 1.0), (0.5, 3.0)])
def test_anisotropic_spacing_scales_distances(spacing):
    # Two slabs 3 rows apart: at a pixel in the gap, d1 + d2 = 4 rows = 4 · spacing[0].
    labels = np.zeros((20, 9), np.int32)
    labels[:8] = 1
    labels[11:] = 2
    w0, sigma = 10.0, 6.0
    w = unet_weight_map(labels, w0=w0, sigma=sigma, class_balance=False, spacing=spacing)
    expected = 1.0 + w0 * math.exp(-((4 * spacing[0]) ** 2) / (2 * sigma**2))
    np.testing.assert_allclose(w[8:11], expected, rtol=1e-6)
    # Inside slab 1, d1 = 0 and d2 = distance to slab 2 along rows only.
    expected_inside = 1.0 + w0 * np.exp(-(((11 - np.arange(8)) * spacing[0]) ** 2) / (2 * sigma**2))
    expected_inside[(11 - np.arange(8)) * spacing[0] > default_max_distance(sigma)] = 1.0
    np.testing.assert_allclose(w[:8, 4], expected_inside, rtol=1e-6)


@pytest.mark.parametrize("ndim", [2, 3])
def test_weights_never_below_class_weight_and_high_between_touching_objects(ndim):
    labels = cells(SHAPES[ndim], 12, 6.0, seed=7)
    w0, sigma = 10.0, 3.0
    w = unet_weight_map(labels, w0=w0, sigma=sigma)
    w_c = class_balance_weights(labels > 0)
    assert (w >= w_c).all()
    # Object pixels with a face neighbour in another object: there d1 + d2 = 0 + 1.
    fg, face = labels > 0, ndi.generate_binary_structure(ndim, 1)
    background_high = np.where(fg, labels, labels.max() + 1)
    contact = fg & ((dilation(labels, face) > labels) | (erosion(background_high, face) < labels))
    assert contact.sum() > 10
    np.testing.assert_allclose(w[contact] - w_c[contact], w0 * math.exp(-1 / (2 * sigma**2)), rtol=1e-5)


def test_edge_mask_restricts_the_separation_term_only():
    labels = cells(SHAPES[2], 12, 6.0, seed=8)
    edges = boundary_target(labels, connectivity=2)
    full = unet_weight_map(labels, sigma=3.0)
    masked = unet_weight_map(labels, sigma=3.0, edge_mask=edges)
    w_c = class_balance_weights(labels > 0)
    np.testing.assert_array_equal(masked[edges == 1], full[edges == 1])
    np.testing.assert_array_equal(masked[edges == 0], w_c[edges == 0])  # the class weight, never 0
    assert masked.min() > 0
    # Balancing the edge target instead of the foreground.
    by_edges = unet_weight_map(labels, sigma=3.0, class_mask=edges, edge_mask=edges)
    assert by_edges[edges == 0].min() == pytest.approx(class_balance_weights(edges)[edges == 0][0])
    with pytest.raises(BiosegError, match="edge_mask has shape"):
        unet_weight_map(labels, edge_mask=edges[:-1])


@pytest.mark.parametrize("ndim", [2, 3])
def test_fewer_than_two_objects_gives_class_weights(ndim):
    shape = SHAPES[ndim]
    empty = np.zeros(shape, np.uint8)
    np.testing.assert_array_equal(unet_weight_map(empty), 1.0)  # one class only
    d1, d2 = object_distances(empty)
    assert np.isinf(d1).all() and np.isinf(d2).all()
    one = np.zeros(shape, np.uint8)
    one[(slice(2, 6),) * ndim] = 3
    np.testing.assert_array_equal(unet_weight_map(one), class_balance_weights(one > 0))
    np.testing.assert_array_equal(unet_weight_map(one, class_balance=False), 1.0)


def test_label_values_do_not_matter():
    labels = cells(SHAPES[2], 10, 5.0, seed=4)
    ref = unet_weight_map(labels, sigma=2.0)
    huge = np.where(labels > 0, labels.astype(np.int64) * 10**9 + 7, 0)  # sparse ids above the image size
    np.testing.assert_array_equal(unet_weight_map(huge, sigma=2.0), ref)
    full = np.where(labels > 0, labels + 10**8, 1)  # no background: the background becomes object 1
    ref_full = unet_weight_map(np.where(labels > 0, labels + 1, 1), sigma=2.0)
    np.testing.assert_array_equal(unet_weight_map(full, sigma=2.0), ref_full)


def test_thousands_of_objects_all_get_separation_weights():
    # 2400 cubes of 2x2x2 in touching pairs: every object must get the contact weight (no give-up).
    labels = np.zeros((9, 60, 120), np.int32)
    n = 0
    for z in range(0, 9, 3):
        for y in range(0, 60, 3):
            for x in range(0, 120, 6):
                labels[z : z + 2, y : y + 2, x : x + 2] = n + 1
                labels[z : z + 2, y : y + 2, x + 2 : x + 4] = n + 2
                n += 2
    assert n == 2400
    w0, sigma = 10.0, 1.5
    start = time.perf_counter()
    w = unet_weight_map(labels, w0=w0, sigma=sigma)
    print(f"unet_weight_map: {n} objects in {labels.shape}: {time.perf_counter() - start:.2f} s")
    term = w - class_balance_weights(labels > 0)
    per_object = ndi.maximum(term, labels, np.arange(1, n + 1))
    np.testing.assert_allclose(per_object, w0 * math.exp(-1 / (2 * sigma**2)), rtol=1e-5)


def test_weight_map_input_errors():
    labels = cells(SHAPES[2], 5, 5.0)
    with pytest.raises(BiosegError, match="sigma"):
        unet_weight_map(labels, sigma=0)
    with pytest.raises(BiosegError, match="spacing"):
        unet_weight_map(labels, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(BiosegError, match="spacing"):
        unet_weight_map(labels, spacing=(1.0, -1.0))
    with pytest.raises(BiosegError, match="workers"):
        unet_weight_map(labels, workers=0)
    with pytest.raises(BiosegError, match="max_distance"):
        object_distances(labels, max_distance=0)
    with pytest.raises(BiosegError, match="integer"):
        unet_weight_map(labels.astype(float))
