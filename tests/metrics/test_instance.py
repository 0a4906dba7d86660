import itertools
import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
from skimage.metrics import adapted_rand_error as sk_adapted_rand_error
from skimage.metrics import variation_of_information as sk_variation_of_information

from bioseg.errors import BiosegError
from bioseg.metrics.instance import (
    DSB_THRESHOLDS,
    adapted_rand_error,
    aggregate,
    dsb_average_precision,
    iou_matrix,
    match_instances,
    match_pairs,
    variation_of_information,
)
from bioseg.reports.instance_charts import plot_f1_by_size, plot_f1_vs_iou

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LOW_AND_HIGH = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9, 1.0)


def voronoi(rng, shape, k, background=0.0, ids=None):
    """Label image of ``k`` random Voronoi cells (ids 1..k unless ``ids`` given), a fraction of pixels 0."""
    seeds = rng.uniform(0, 1, (k, len(shape))) * np.array(shape)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1)
    nearest = ((grid[..., None, :] - seeds) ** 2).sum(-1).argmin(-1)
    ids = np.arange(1, k + 1) if ids is None else np.asarray(ids)
    lab = ids[nearest].astype(np.int64)
    if background:
        lab[rng.uniform(size=shape) < background] = 0
    return lab


def reference_ious(pred, truth):
    t_ids = [i for i in np.unique(truth) if i]
    p_ids = [j for j in np.unique(pred) if j]
    out = np.zeros((len(t_ids), len(p_ids)))
    for a, i in enumerate(t_ids):
        for b, j in enumerate(p_ids):
            ti, pj = truth == i, pred == j
            out[a, b] = (ti & pj).sum() / (ti | pj).sum()
    return out, np.array(t_ids, int), np.array(p_ids, int)


def brute_force(scores, thresholds):
    """Every one-to-one assignment: the most pairs with score >= t, then the largest total score."""
    n_t, n_p = scores.shape
    k = max(n_t, n_p)
    padded = np.zeros((k, k))
    padded[:n_t, :n_p] = scores
    perms = list(itertools.permutations(range(k)))
    perms = np.array(perms, dtype=int).reshape(len(perms), k)  # k = 0: one empty assignment
    chosen = padded[np.arange(k), perms]  # (k!, k): score of each row's partner in each assignment
    best = []
    for t in thresholds:
        ok = chosen >= t
        count = ok.sum(axis=1)
        total = np.where(ok, chosen, 0.0).sum(axis=1)
        m = count.max()
        best.append((int(m), float(total[count == m].max())))
    return best


# ------------------------------------------------------------------------------------------------------------
# IoU matrix


@pytest.mark.parametrize("shape", [(13, 14), (7, 8, 9)])
def test_iou_matrix_equals_pixelwise_reference(shape):
    rng = np.random.default_rng(1)
    truth = voronoi(rng, shape, 5, 0.2, ids=[3, 17, 4, 250, 99])
    pred = voronoi(rng, shape, 6, 0.3, ids=[1000, 2, 7, 8, 70000, 5])
    ious, t_ids, p_ids, t_sizes, p_sizes = iou_matrix(pred, truth)
    ref, ref_t, ref_p = reference_ious(pred, truth)
    np.testing.assert_array_equal(t_ids, ref_t)
    np.testing.assert_array_equal(p_ids, ref_p)
    np.testing.assert_allclose(ious, ref, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(t_sizes, [(truth == i).sum() for i in ref_t])
    np.testing.assert_array_equal(p_sizes, [(pred == j).sum() for j in ref_p])


def test_iou_matrix_large_ids_and_dtypes():
    rng = np.random.default_rng(2)
    truth = voronoi(rng, (15, 16), 4, 0.1)
    pred = voronoi(rng, (15, 16), 5, 0.1)
    base = iou_matrix(pred, truth)[0]
    # ids up to 2**40 force the sort-based count instead of the dense one; same table
    big = np.where(pred > 0, pred * (2**40 // 8), 0)
    np.testing.assert_allclose(iou_matrix(big, truth.astype(np.uint16))[0], base)
    np.testing.assert_allclose(iou_matrix(pred.astype(np.float32), truth.astype(np.uint8))[0], base)


# ------------------------------------------------------------------------------------------------------------
# matching


def test_matching_equals_brute_force_on_random_label_images():
    rng = np.random.default_rng(3)
    exercised_choice = 0
    for case in range(120):
        shape = (11, 12) if case % 3 else (5, 6, 7)
        truth = voronoi(rng, shape, int(rng.integers(1, 7)), rng.uniform(0, 0.4))
        pred = voronoi(rng, shape, int(rng.integers(1, 7)), rng.uniform(0, 0.4))
        scores = match_instances(pred, truth, thresholds=LOW_AND_HIGH)
        ious = iou_matrix(pred, truth)[0]
        for k, (tp, total) in enumerate(brute_force(ious, LOW_AND_HIGH)):
            assert scores.tp[k] == tp, (case, LOW_AND_HIGH[k])
            assert scores.sum_matched_iou[k] == pytest.approx(total, abs=1e-12)
            assert scores.fp[k] == scores.n_pred - tp and scores.fn[k] == scores.n_true - tp
        cand = ious >= 0.1
        exercised_choice += bool((cand.sum(0) > 1).any() or (cand.sum(1) > 1).any())
    assert exercised_choice > 30  # most cases needed a real assignment, not the unique shortcut


def test_match_pairs_equals_brute_force_on_random_matrices():
    rng = np.random.default_rng(4)
    for _ in range(150):
        n_t, n_p = rng.integers(0, 7, size=2)
        s = rng.uniform(0, 1, (n_t, n_p)) * (rng.uniform(size=(n_t, n_p)) < 0.6)
        thresholds = (0.1, 0.3, 0.5, 0.7)
        for t, (tp, total) in zip(thresholds, brute_force(s, thresholds), strict=True):
            rows, cols = match_pairs(s, t)
            assert len(rows) == tp
            assert len(set(rows)) == len(rows) and len(set(cols)) == len(cols)  # one-to-one
            assert np.all(s[rows, cols] >= t)
            assert s[rows, cols].sum() == pytest.approx(total, abs=1e-12)


def test_optimal_matching_beats_greedy():
    # greedy (best IoU first) takes (0, 0) and leaves true 1 unmatched; the optimum pairs both
    s = np.array([[0.45, 0.3], [0.35, 0.0]])
    rows, cols = match_pairs(s, 0.3)
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 1), (1, 0)]
    rows, cols = match_pairs(s, 0.4)
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 0)]


def test_matching_is_symmetric_in_pred_and_truth():
    rng = np.random.default_rng(5)
    truth = voronoi(rng, (21, 22), 8, 0.2)
    pred = voronoi(rng, (21, 22), 10, 0.2)
    a = match_instances(pred, truth, thresholds=LOW_AND_HIGH)
    b = match_instances(truth, pred, thresholds=LOW_AND_HIGH)
    np.testing.assert_array_equal(a.tp, b.tp)
    np.testing.assert_array_equal(a.fp, b.fn)
    np.testing.assert_allclose(a.f1, b.f1)
    assert (a.n_merges, a.n_splits) == (b.n_splits, b.n_merges)


# ------------------------------------------------------------------------------------------------------------
# scores


@pytest.mark.parametrize("shape", [(33, 34), (17, 18, 19)])
def test_perfect_prediction(shape):
    rng = np.random.default_rng(6)
    truth = voronoi(rng, shape, 9, 0.0, ids=[5, 9, 12, 40, 41, 42, 100, 7, 8])
    truth[tuple(slice(0, 4) for _ in shape)] = 0
    relabelled = np.where(truth > 0, 1000 - truth, 0)  # same objects, other ids
    for pred in (truth, relabelled):
        s = match_instances(pred, truth)
        np.testing.assert_array_equal(s.tp, 9)
        for col in (s.precision, s.recall, s.f1, s.accuracy, s.mean_matched_iou, s.panoptic_quality):
            np.testing.assert_allclose(col, 1.0)
        assert (s.n_merges, s.n_splits) == (0, 0)
        assert s.adapted_rand_error == pytest.approx(0.0, abs=1e-12)
        assert s.voi_split == pytest.approx(0.0, abs=1e-12) and s.voi_merge == pytest.approx(0.0, abs=1e-12)
        assert dsb_average_precision(pred, truth) == 1.0


def test_empty_prediction_and_empty_truth():
    truth = np.zeros((9, 10), int)
    truth[1:4, 1:4], truth[5:8, 5:9] = 3, 8
    empty = np.zeros_like(truth)

    s = match_instances(empty, truth)
    np.testing.assert_array_equal(s.fn, 2)
    np.testing.assert_array_equal(s.tp + s.fp, 0)
    for col in (s.precision, s.recall, s.f1, s.accuracy, s.panoptic_quality):
        np.testing.assert_array_equal(col, 0.0)

    s = match_instances(truth, empty)
    np.testing.assert_array_equal(s.fp, 2)
    np.testing.assert_array_equal(s.f1, 0.0)
    assert math.isnan(s.adapted_rand_error)
    doc = json.loads(json.dumps(s.to_dict(), allow_nan=False))
    assert doc["adapted_rand_error"] is None and doc["size_bins"] == []

    s = match_instances(empty, empty)  # nothing to find, nothing found
    np.testing.assert_array_equal(s.f1, 1.0)
    assert s.n_true == s.n_pred == 0
    assert dsb_average_precision(empty, empty) == 1.0


def test_merge_and_split_are_counted():
    truth = np.zeros((10, 20), int)
    truth[2:8, 2:8], truth[2:8, 10:16] = 1, 2
    merged = np.zeros_like(truth)
    merged[2:8, 2:16] = 7  # covers all of both true objects
    s = match_instances(merged, truth)
    assert (s.n_merges, s.n_splits) == (1, 0)
    s = match_instances(truth, merged)  # the same picture read the other way: one true object, split in two
    assert (s.n_merges, s.n_splits) == (0, 1)

    partial = np.zeros_like(truth)
    partial[2:8, 5:12] = 7  # half of object 1 (not more) and a third of object 2
    assert match_instances(partial, truth).n_merges == 0
    partial[2:8, 4:12] = 7  # now more than half of object 1 but still a third of object 2
    assert match_instances(partial, truth).n_merges == 0
    partial[2:8, 4:14] = 7  # more than half of both
    assert match_instances(partial, truth).n_merges == 1


def test_dsb_average_precision_hand_computed():
    truth = np.zeros((12, 12), int)
    truth[0:4, 0:4], truth[6:10, 6:10] = 1, 2
    pred = np.zeros_like(truth)
    pred[0:4, 0:4] = 5  # exact
    pred[6:10, 6:8] = 6  # half of object 2: IoU 0.5, matched at 0.5 only
    # threshold 0.5: tp=2 -> 1; the other nine: tp=1, fp=1, fn=1 -> 1/3
    assert dsb_average_precision(pred, truth) == pytest.approx((1 + 9 / 3) / 10)
    s = match_instances(pred, truth, thresholds=DSB_THRESHOLDS)
    assert s.at(0.5)["tp"] == 2 and s.at(0.55)["tp"] == 1
    assert s.at(0.55)["mean_matched_iou"] == 1.0
    assert s.at(0.5)["panoptic_quality"] == pytest.approx(1.0 * 0.75)


def test_criteria_iot_and_iop():
    truth = np.zeros((10, 10), int)
    truth[0:8, 0:8] = 1  # 64 px
    pred = np.zeros_like(truth)
    pred[0:4, 0:4] = 2  # 16 px, entirely inside
    assert match_instances(pred, truth, thresholds=0.5, criterion="iop").tp[0] == 1
    assert match_instances(pred, truth, thresholds=0.5, criterion="iot").tp[0] == 0
    assert match_instances(pred, truth, thresholds=0.25, criterion="iot").tp[0] == 1
    assert match_instances(pred, truth, thresholds=0.25, criterion="iou").tp[0] == 1
    assert match_instances(pred, truth, thresholds=0.26, criterion="iou").tp[0] == 0


@pytest.mark.parametrize("shape", [(33, 34), (9, 10, 11)])
def test_arand_and_voi_equal_scikit_image(shape):
    rng = np.random.default_rng(7)
    for _ in range(4):
        truth = voronoi(rng, shape, int(rng.integers(2, 9)), 0.3, ids=None)
        truth = np.where(truth > 0, truth * 31 + 2, 0)  # non-sequential ids
        pred = voronoi(rng, shape, int(rng.integers(1, 12)), rng.uniform(0, 0.5))
        err, prec, rec = adapted_rand_error(pred, truth)
        sk_err, sk_prec, sk_rec = sk_adapted_rand_error(truth, pred)
        assert err == pytest.approx(sk_err, abs=1e-12)
        # scikit-image returns precision and recall in swapped order (its issue #6485)
        assert (prec, rec) == pytest.approx((sk_rec, sk_prec), abs=1e-12)
        split, merge = variation_of_information(pred, truth)
        np.testing.assert_allclose([split, merge], sk_variation_of_information(truth, pred), atol=1e-10)
        s = match_instances(pred, truth)
        assert (s.adapted_rand_error, s.arand_precision, s.arand_recall) == pytest.approx((err, prec, rec))
        assert (s.voi_split, s.voi_merge) == pytest.approx((split, merge))


def test_arand_precision_means_no_false_merges():
    truth = np.array([[1, 2], [3, 2]])
    one = np.ones_like(truth)  # everything in one segment: all true pairs are kept together (recall 1)
    err, prec, rec = adapted_rand_error(one, truth)
    assert rec == 1.0 and prec < 1.0
    err, prec, rec = adapted_rand_error(np.arange(1, 5).reshape(2, 2), truth)  # every pixel alone
    assert prec == 1.0 and rec == 0.0 and err == 1.0


def test_size_bins():
    truth = np.zeros((30, 40), int)
    pred = np.zeros_like(truth)
    for k in range(3):  # three small 3x3 objects, all found exactly
        truth[1:4, 1 + 5 * k : 4 + 5 * k] = k + 1
        pred[1:4, 1 + 5 * k : 4 + 5 * k] = k + 1
    truth[10:20, 0:10], truth[10:20, 13:23], truth[10:20, 26:36] = 10, 11, 12  # three large ones, missed
    pred[25:28, 25:28] = 50  # a small false positive
    s = match_instances(pred, truth, size_bins=[0, 50, 1000])
    edges, f1 = s.f1_by_size(0.5)
    np.testing.assert_array_equal(edges, [0, 50, 1000])
    assert f1.tolist() == pytest.approx([2 * 3 / (2 * 3 + 1), 0.0])
    table = s.by_size()
    assert table["n_true"].tolist() == [3, 3]
    assert table["fp"][:, 4].tolist() == [1, 0]
    quantile = s.by_size(2)  # median split of the true sizes: the small ones vs the large ones
    np.testing.assert_allclose(quantile["edges"], [9, 54.5, 100])
    assert quantile["tp"][:, 4].tolist() == [3, 0] and quantile["fn"][:, 4].tolist() == [0, 3]
    same = match_instances(pred * (pred < 50), truth * (truth < 10))  # all true objects of one size
    assert same.by_size(3)["n_true"].tolist() == [3]
    with pytest.raises(BiosegError, match="not scored"):
        s.f1_by_size(0.55)


def test_aggregate_equals_pooled_image():
    rng = np.random.default_rng(8)
    # full partitions (no background) with ids disjoint between images: pooling side by side is exact
    a_t, a_p = voronoi(rng, (16, 17), 5), voronoi(rng, (16, 17), 6)
    b_t, b_p = voronoi(rng, (16, 17), 4) + 100, voronoi(rng, (16, 17), 7) + 100
    parts = [match_instances(a_p, a_t, size_bins=2), match_instances(b_p, b_t, size_bins=2)]
    agg = aggregate(parts)
    pooled = match_instances(np.hstack([a_p, b_p]), np.hstack([a_t, b_t]), size_bins=2)
    for col in ("tp", "fp", "fn", "precision", "recall", "f1", "accuracy", "mean_matched_iou"):
        np.testing.assert_allclose(getattr(agg, col), getattr(pooled, col), err_msg=col)
    assert agg.n_images == 2 and agg.n_true == 9 and agg.n_pred == 13
    assert agg.adapted_rand_error == pytest.approx(pooled.adapted_rand_error)
    assert (agg.voi_split, agg.voi_merge) == pytest.approx((pooled.voi_split, pooled.voi_merge))
    for key in ("edges", "tp", "fp", "fn"):
        np.testing.assert_allclose(agg.by_size()[key], pooled.by_size()[key])
    for row_a, row_p in zip(agg.table(), pooled.table(), strict=True):
        assert row_a == pytest.approx(row_p)
    with pytest.raises(BiosegError, match="same thresholds"):
        aggregate([parts[0], match_instances(a_p, a_t, thresholds=(0.5,))])
    with pytest.raises(BiosegError, match="at least one"):
        aggregate([])


def test_to_dict_is_json_and_round_trips_the_table():
    rng = np.random.default_rng(9)
    truth, pred = voronoi(rng, (20, 21), 6, 0.2), voronoi(rng, (20, 21), 7, 0.2)
    s = match_instances(pred, truth)
    doc = json.loads(json.dumps(s.to_dict(), allow_nan=False))
    assert [row["threshold"] for row in doc["table"]] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert [row["f1"] for row in doc["table"]] == pytest.approx(s.f1.tolist())
    assert doc["table"][4] == s.at(0.5)
    assert doc["average_precision"] == pytest.approx(float(np.mean(s.accuracy)))
    assert sum(b["n_true"] for b in doc["size_bins"]) == s.n_true


def test_input_errors():
    a = np.zeros((4, 5), int)
    with pytest.raises(BiosegError, match="same shape"):
        match_instances(a, np.zeros((5, 4), int))
    with pytest.raises(BiosegError, match="non-integer"):
        match_instances(a + 0.5, a)
    with pytest.raises(BiosegError, match="negative"):
        match_instances(a - 1, a)
    with pytest.raises(BiosegError, match="outside"):
        match_instances(a, a, thresholds=(0.0, 0.5))
    with pytest.raises(BiosegError, match="criterion"):
        match_instances(a, a, criterion="dice")
    with pytest.raises(BiosegError, match="size_bins"):
        match_instances(a, a, size_bins=[10, 5])


# ------------------------------------------------------------------------------------------------------------
# charts


def _assert_png(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = iio.imread(path)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100 and pixels.std() > 0


def test_plots_write_pngs(tmp_path):
    rng = np.random.default_rng(10)
    truth = voronoi(rng, (40, 41), 12, 0.2)
    good = match_instances(truth, truth)
    bad = match_instances(voronoi(rng, (40, 41), 9, 0.2), truth)
    from_json = json.loads(json.dumps(bad.to_dict()))

    path = plot_f1_vs_iou({"bioseg": good, "Otsu": from_json}, tmp_path / "charts" / "f1_vs_iou.png")
    assert path == tmp_path / "charts" / "f1_vs_iou.png"
    _assert_png(path)
    _assert_png(plot_f1_vs_iou({"bioseg": good}, tmp_path / "pq.png", metric="panoptic_quality", title="x"))
    _assert_png(plot_f1_by_size(bad, tmp_path / "size.png"))
    _assert_png(plot_f1_by_size(from_json, tmp_path / "size_json.png"))
    _assert_png(plot_f1_by_size(bad, tmp_path / "size_edges.png", bins=[0, 50, 500], threshold=0.75))

    with pytest.raises(BiosegError, match="metric"):
        plot_f1_vs_iou({"a": good}, tmp_path / "x.png", metric="dice")
    with pytest.raises(BiosegError, match="expected InstanceScores"):
        plot_f1_vs_iou({"a": [1, 2]}, tmp_path / "x.png")
    with pytest.raises(BiosegError, match="no objects"):
        plot_f1_by_size(match_instances(truth * 0, truth * 0), tmp_path / "x.png")
