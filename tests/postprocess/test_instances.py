import numpy as np
import pytest
from helpers import assert_sequential, best_ious
from pydantic import ValidationError
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage.segmentation import find_boundaries
from skimage.segmentation import watershed as sk_watershed

from bioseg.config import InstanceConfig
from bioseg.errors import BiosegError
from bioseg.postprocess import agglomeration as agg
from bioseg.postprocess import watershed as ws
from bioseg.postprocess.instances import boundaries_to_instances, foreground_to_instances

# --- synthetic data and a tiny matcher ------------------------------------------------------------


def voronoi_cells(shape, n, rng, spacing=None, radius=None):
    """Labels 1..n: nearest of n random centres (physical distance); with ``radius``, only within it."""
    spacing = (1.0,) * len(shape) if spacing is None else spacing
    centres = np.stack([rng.integers(2, s - 2, n) for s in shape], axis=1)
    seeds = np.zeros(shape, np.int32)
    seeds[tuple(centres.T)] = np.arange(1, n + 1)
    dist, nearest = ndi.distance_transform_edt(seeds == 0, sampling=spacing, return_indices=True)
    labels = seeds[tuple(nearest)]
    if radius is not None:
        labels[dist > radius] = 0
    return ws_relabel(labels)


def ws_relabel(labels):
    values = np.unique(labels[labels > 0])
    lut = np.zeros(labels.max() + 1, np.int32)
    lut[values] = np.arange(1, values.size + 1)
    return lut[labels]


def boundary_map(labels, rng, noise=0.05, gaps=0.0):
    """Boundary probability from the label borders (0.9 on borders, 0.05 inside) + noise; a fraction
    ``gaps`` of the border voxels drops to 0.3 (below the default threshold)."""
    border = find_boundaries(labels, mode="inner")
    prob = np.where(border, 0.9, 0.05) + rng.normal(0, noise, labels.shape)
    if gaps:
        holes = border & (rng.random(labels.shape) < gaps)
        prob[holes] = 0.3
    return np.clip(prob, 0, 1).astype(np.float32)


# --- distance transform, seeds, watershed against their references --------------------------------


@pytest.mark.parametrize(
    "shape, spacing, density",
    [
        ((33, 34), None, 0.1),
        ((33, 34), (1.0, 2.5), 0.05),
        ((17, 18, 19), None, 0.05),
        ((9, 40, 41), (4.0, 1.0, 1.0), 0.02),  # few thick slices: slice-wise path
        ((40, 12, 13), (0.5, 1.0, 1.0), 0.002),  # large distances along z: n-d fallback
    ],
)
def test_distance_transform_equals_scipy(shape, spacing, density):
    rng = np.random.default_rng(0)
    region = rng.random(shape) > density
    ours = ws.distance_transform(region, spacing)
    ref = ndi.distance_transform_edt(region, sampling=spacing)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-4)


def test_distance_transform_slice_without_background_and_all_true():
    region = np.ones((6, 20, 21), bool)
    region[4, 3, 5] = False  # slices 0-3 and 5 have no background of their own
    np.testing.assert_allclose(
        ws.distance_transform(region, (2.0, 1.0, 1.0)),
        ndi.distance_transform_edt(region, sampling=(2.0, 1.0, 1.0)),
        rtol=1e-5,
    )
    assert np.isinf(ws.distance_transform(np.ones((5, 6), bool))).all()


@pytest.mark.parametrize("shape", [(33, 34), (7, 18, 19), (1, 5, 6)])
def test_local_maximum_filter_equals_scipy(shape):
    image = np.random.default_rng(7).random(shape).astype(np.float32)
    ref = ndi.maximum_filter(image, size=3, mode="nearest")
    np.testing.assert_array_equal(ws._max_filter3(image), ref)


def test_quantize_rounds_onto_255_levels():
    x = np.linspace(-0.5, 1.5, 2001, dtype=np.float32)
    q = ws.quantize(x, (0.0, 1.0))
    assert q.dtype == np.uint8 and q.min() == 0 and q.max() == 254
    np.testing.assert_array_equal(q, np.floor(np.clip(x, 0, 1).astype(np.float64) * 254 + 0.5))
    assert (np.diff(q.astype(int)) >= 0).all()


@pytest.mark.parametrize(
    "shape, sigma, h", [((48, 49), 3.0, 0.3), ((15, 24, 25), 2.0, 0.2), ((64, 65), 4.0, 0.2), ((20, 40, 41), 3.0, 0.15)]
)
def test_h_maxima_seeds_equal_skimage(shape, sigma, h):
    rng = np.random.default_rng(1)
    field = ndi.gaussian_filter(rng.random(shape), sigma)
    field = (field - field.min()) / (field.max() - field.min()) + 0.01  # > 0 everywhere
    ours = ws.h_maxima_seeds(field, h)
    ref = h_maxima(field, h).astype(bool)
    assert ref.any()
    np.testing.assert_array_equal(ours > 0, ref)
    # one label per separate peak plateau, numbered 1..n
    assert ours.max() == ndi.label(ref, structure=np.ones((3,) * len(shape)))[1]


def test_min_distance_seeds_are_separated_peaks():
    dist = ws.distance_transform(np.pad(np.ones((20, 40), bool), 1), None)
    markers = ws.min_distance_seeds(dist, 3)
    coords = np.argwhere(markers)
    assert markers.max() == len(coords) >= 1
    for i in range(len(coords)):
        for j in range(i + 1, len(coords)):
            assert np.abs(coords[i] - coords[j]).max() >= 3
    assert np.isclose(dist[tuple(coords.T)], dist.max()).all()  # on the medial ridge


@pytest.mark.parametrize("shape", [(41, 43), (13, 22, 23)])
def test_watershed_agrees_with_skimage(shape):
    rng = np.random.default_rng(2)
    image = ws.quantize(ndi.gaussian_filter(rng.random(shape), 1.5))
    markers = np.zeros(shape, np.int32)
    idx = tuple(rng.integers(0, s, 12) for s in shape)
    markers[idx] = np.arange(1, 13)
    ours = ws.watershed(image, markers)
    ref = sk_watershed(image, markers)
    assert ours.dtype == np.int32
    assert (ours > 0).all()
    assert np.mean(ours == ref) > 0.97  # differences only where two floods tie on a quantised level


def test_watershed_splits_at_the_ridge_and_respects_mask():
    image = np.zeros((9, 15), np.float32)
    image[:, 7] = 1.0
    image[4, 7] = 0.5  # lowest pass of the ridge
    markers = np.zeros(image.shape, np.int32)
    markers[4, 1], markers[4, 13] = 1, 2
    ours = ws.watershed(image, markers)
    np.testing.assert_array_equal(ours, sk_watershed(image, markers))
    assert (ours[:, :7] == 1).all() and (ours[:, 8:] == 2).all()

    mask = np.ones(image.shape, bool)
    mask[:, 10] = False  # cuts off the right part, which holds marker 2 ...
    markers[4, 13] = 0  # ... now without a marker
    got = ws.watershed(image, markers, mask=mask)
    np.testing.assert_array_equal(got, sk_watershed(image, markers, mask=mask))
    assert (got[:, 10:] == 0).all() and (got[:, :10] == 1).all()


# --- region adjacency graph -----------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(11, 12), (6, 7, 8)])
def test_region_graph_equals_brute_force(shape):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 6, shape)
    labels = ndi.median_filter(labels, size=2)  # some contiguous patches
    prob = rng.random(shape)
    ref: dict[tuple[int, int], list[float]] = {}
    for idx in np.ndindex(shape):
        for axis in range(len(shape)):
            nb = list(idx)
            nb[axis] += 1
            if nb[axis] >= shape[axis]:
                continue
            a, b = labels[idx], labels[tuple(nb)]
            if a != b and a and b:
                key = (min(a, b), max(a, b))
                entry = ref.setdefault(key, [0.0, 0])
                entry[0] += max(prob[idx], prob[tuple(nb)])
                entry[1] += 1
    graph = agg.region_graph(labels, prob)
    got = {tuple(e): (s, c) for e, s, c in zip(graph.edges.tolist(), graph.prob_sum, graph.count, strict=True)}
    assert set(got) == set(ref)
    for key, (s, c) in ref.items():
        assert got[key][1] == c
        assert got[key][0] == pytest.approx(s)
        assert graph.mean[list(got).index(key)] == pytest.approx(s / c)


# --- agglomeration --------------------------------------------------------------------------------


def tiny_graph(edges, sums, counts, n):
    return agg.RegionGraph(n, np.asarray(edges, np.int64), np.asarray(sums, float), np.asarray(counts, np.int64))


def test_average_linkage_uses_the_mean_over_the_whole_merged_contact():
    # 1-2 merge first (0.1); the merged contact with 3 then averages (4.5 + 27) / 40 = 0.79 → no merge.
    # An update that kept the smaller mean (0.45) would wrongly merge 3 as well.
    graph = tiny_graph([[1, 2], [1, 3], [2, 3]], [0.1, 4.5, 27.0], [1, 10, 30], 3)
    mapping = agg.average_agglomeration(graph, 0.5)
    assert mapping[1] == mapping[2] != mapping[3]
    assert agg.average_agglomeration(graph, 0.8)[3] == mapping[1]  # 0.7875 < 0.8


def test_gaec_sums_parallel_edges():
    # 1-2 attract strongly; after merging, costs to 3 add: +1 - 0.5 > 0 → 3 joins.
    graph = tiny_graph([[1, 2], [1, 3], [2, 3]], [0, 0, 0], [1, 1, 1], 3)
    mapping = agg.gaec(graph, np.array([5.0, 1.0, -0.5]))
    assert mapping[1] == mapping[2] == mapping[3]
    # ... but +1 - 3 < 0 → 3 stays apart, though 1-3 alone was attractive.
    mapping = agg.gaec(graph, np.array([5.0, 1.0, -3.0]))
    assert mapping[1] == mapping[2] != mapping[3]


def test_multicut_costs_sign_and_beta():
    graph = tiny_graph([[1, 2], [2, 3]], [0.2, 0.9], [1, 1], 3)
    costs = agg.multicut_costs(graph, beta=0.5)
    np.testing.assert_allclose(costs, [np.log(4.0), np.log(1 / 9)])
    assert agg.multicut_costs(graph, beta=0.9)[0] < 0  # a strong boundary bias cuts even weak edges


def over_segmented_image():
    """Two cells (left, right) divided by a real boundary (0.9); the left one is cut by a weak false
    boundary (0.2). A low threshold makes the false boundary split the seeds."""
    prob = np.full((31, 61), 0.02, np.float32)
    prob[:, 40] = 0.9
    prob[:, 12] = 0.2
    truth = np.where(np.arange(61) < 40, 1, 2)[None, :].repeat(31, 0)
    return prob, truth


@pytest.mark.parametrize("method", ["average", "multicut"])
def test_agglomeration_merges_false_boundary_and_keeps_real_one(method):
    prob, truth = over_segmented_image()
    params = InstanceConfig(threshold=0.15, agglomeration="none")
    over = boundaries_to_instances(prob, params)
    assert over.max() == 3  # the false boundary did split the left cell
    params = InstanceConfig(threshold=0.15, agglomeration=method)
    labels = boundaries_to_instances(prob, params)
    assert labels.max() == 2
    assert (best_ious(truth, labels) > 0.95).all()


def test_size_filter_merges_into_largest_contact_or_removes():
    # 1 (size 3) touches 2 with 5 pair-contacts and 3 with 2 → merges into 2; 4 is huge.
    graph = tiny_graph([[1, 2], [1, 3], [2, 4], [3, 4]], [0, 0, 0, 0], [5, 2, 9, 9], 4)
    sizes = np.array([0, 3, 50, 40, 900])
    merged = agg.size_filter(graph, sizes, min_size=10, max_size=500)
    assert merged[1] == merged[2] == 2 and merged[3] == 3 and merged[4] == 0
    removed = agg.size_filter(graph, sizes, min_size=10, small="remove")
    np.testing.assert_array_equal(removed, [0, 0, 2, 3, 4])
    # an isolated small object has nothing to merge into: removed
    lonely = agg.size_filter(tiny_graph(np.zeros((0, 2)), [], [], 2), np.array([0, 3, 50]), min_size=10)
    np.testing.assert_array_equal(lonely, [0, 0, 2])


def test_min_and_max_size_in_the_pipeline():
    prob, _ = over_segmented_image()
    base = InstanceConfig(threshold=0.15, agglomeration="none")
    sizes = np.bincount(boundaries_to_instances(prob, base).ravel())[1:]
    small = int(sizes.min())
    kw = dict(threshold=0.15, agglomeration="none")
    merged = boundaries_to_instances(prob, InstanceConfig(**kw, min_size=small + 1))
    assert merged.max() == 2 and (merged > 0).all()
    removed = boundaries_to_instances(prob, InstanceConfig(**kw, min_size=small + 1, small_objects="remove"))
    assert removed.max() == 2 and (removed == 0).sum() == small
    capped = boundaries_to_instances(prob, InstanceConfig(**kw, max_size=int(sizes.max()) - 1))
    assert capped.max() == 2 and (capped == 0).sum() == sizes.max()
    for labels in (merged, removed, capped):
        assert_sequential(labels)


# --- the whole pipeline ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["average", "multicut", "none"])
@pytest.mark.parametrize(
    "shape, n, spacing", [((96, 97), 9, None), ((18, 56, 57), 8, (3.0, 1.0, 1.0))], ids=["2d", "3d"]
)
def test_touching_cells_are_recovered(shape, n, spacing, method):
    rng = np.random.default_rng(4)
    truth = voronoi_cells(shape, n, rng, spacing)
    prob = boundary_map(truth, rng, noise=0.05, gaps=0.05)
    timings: dict = {}
    labels = boundaries_to_instances(prob, InstanceConfig(agglomeration=method), spacing=spacing, timings=timings)
    assert_sequential(labels)
    ious = best_ious(truth, labels)
    assert np.mean(ious > 0.8) >= 0.85, ious
    assert {"distance", "seeds", "watershed", "graph", "agglomeration", "relabel"} <= set(timings)


def test_touching_discs_with_a_foreground_mask_and_min_distance_seeds():
    rng = np.random.default_rng(5)
    truth = voronoi_cells((80, 81), 6, rng, radius=14)
    prob = boundary_map(truth, rng, noise=0.03)
    params = InstanceConfig(seed_method="min_distance", min_distance=4, min_size=20)
    labels = boundaries_to_instances(prob, params, mask=truth > 0)
    assert (labels[truth == 0] == 0).all()
    assert np.mean(best_ious(truth, labels) > 0.8) >= 0.8
    assert_sequential(labels)


def test_degenerate_maps():
    assert (boundaries_to_instances(np.ones((12, 13), np.float32)) == 0).all()  # all boundary
    assert (boundaries_to_instances(np.zeros((12, 13), np.float32)) == 1).all()  # no boundary at all
    mask = np.zeros((12, 13), bool)
    assert (boundaries_to_instances(np.zeros((12, 13), np.float32), mask=mask) == 0).all()


def test_anisotropic_spacing_is_used_by_the_distance():
    rng = np.random.default_rng(6)
    truth = voronoi_cells((10, 40, 41), 5, rng, (4.0, 1.0, 1.0))
    prob = boundary_map(truth, rng, noise=0.02)
    timings: dict = {}
    labels = boundaries_to_instances(prob, spacing=[4, 1, 1], timings=timings)
    assert np.mean(best_ious(truth, labels) > 0.8) >= 0.8
    with pytest.raises(BiosegError, match="spacing"):
        boundaries_to_instances(prob, spacing=(1.0, 1.0))
    with pytest.raises(BiosegError, match="spacing"):
        foreground_to_instances(prob, spacing=(1.0, -1.0, 1.0))


def test_input_errors_are_readable():
    with pytest.raises(BiosegError, match="2D"):
        boundaries_to_instances(np.zeros((2, 3, 4, 5), np.float32))
    with pytest.raises(BiosegError, match="sigmoid"):
        boundaries_to_instances(np.full((5, 6), 3.0, np.float32))
    with pytest.raises(BiosegError, match="NaN"):
        boundaries_to_instances(np.full((5, 6), np.nan, np.float32))
    with pytest.raises(BiosegError, match="mask"):
        boundaries_to_instances(np.zeros((5, 6), np.float32), mask=np.ones((5, 7), bool))
    with pytest.raises(ValidationError, match="h_maxima"):
        InstanceConfig(seed_method="h_maxim")
    with pytest.raises(ValidationError, match="multicut"):
        InstanceConfig(agglomeration="multicutt")
    with pytest.raises(ValidationError, match="beta"):
        InstanceConfig(beta=1.0)
    with pytest.raises(ValidationError, match="max_size"):
        InstanceConfig(min_size=10, max_size=5)
    with pytest.raises(ValidationError, match="components"):
        InstanceConfig(foreground_method="component")
    with pytest.raises(BiosegError, match="InstanceConfig"):
        boundaries_to_instances(np.zeros((5, 6), np.float32), {"threshold": 0.3})
