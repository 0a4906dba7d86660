"""Instance segmentation scores: object matching at IoU thresholds, F1/AP/PQ, merges and splits, ARand, VOI.

Everything is derived from one sparse contingency table of (true label, predicted label) pixel counts,
computed in a single pass over the pixels; 2D and 3D label images (any number of dimensions) go through
the same code. Label 0 is the background; other label values need not be sequential. The table and the
IoU matrix live in :mod:`~bioseg.metrics.overlap`, the matching in :mod:`~bioseg.metrics.matching`, ARand
and VOI in :mod:`~bioseg.metrics.pair_scores`, the result and the ratios derived from its counts in
:mod:`~bioseg.metrics.instance_scores`; this module ties them into per-threshold scores.

Matching (:func:`match_pairs`)
    A true and a predicted object may be paired when their score (IoU by default) is ``>= threshold``;
    each object is paired at most once. Among all such one-to-one matchings we take one with the most
    pairs and, among those, the largest total score of the matched pairs. This is StarDist's ``matching``
    (``linear_sum_assignment`` on ``-(score >= t) - score / (2 n)``) with one refinement: its tie-break
    also counts pairs below the threshold, ours only the matched ones, so ``tp`` is identical and the
    matched IoU can only be higher. For IoU thresholds above 0.5 every object has at most one candidate
    partner, so the candidates are the matching and no assignment is solved; in general the candidate
    graph is split into connected components and only components with a choice to make go to
    ``scipy.optimize.linear_sum_assignment`` (about 30x faster than one dense assignment per threshold
    on a 2048 x 2048 image with 3000 objects).

Per threshold
    ``tp`` matched pairs, ``fp`` unmatched predictions, ``fn`` unmatched true objects;
    ``precision = tp / (tp + fp)``, ``recall = tp / (tp + fn)``, ``f1 = 2 tp / (2 tp + fp + fn)``,
    ``accuracy = tp / (tp + fp + fn)`` (the "average precision" of the 2018 Data Science Bowl at one
    threshold), ``mean_matched_iou`` (mean score of the matched pairs) and
    ``panoptic_quality = f1 * mean_matched_iou``. An image with no object in either truth or prediction
    scores 1 everywhere (nothing to find, nothing found); otherwise a ratio with a zero denominator is 0,
    as in :mod:`bioseg.metrics.semantic`.

Merges and splits (threshold-free)
    A *merge* is a predicted object that covers more than half of each of at least two true objects.
    A *split* is a true object that contains more than half of each of at least two predicted objects.

Size bins
    True objects are binned by their size (pixels/voxels); a matched prediction counts in its partner's
    bin and an unmatched prediction in the bin of its own size. Default bins: tertiles of the true sizes.

Pixel-pair scores (same conventions as scikit-image)
    Adapted Rand error over the pixels where the truth is foreground (the prediction's background is one
    segment there), as ``skimage.metrics.adapted_rand_error(truth, pred)``; variation of information over
    all pixels, background included, as ``skimage.metrics.variation_of_information(truth, pred)``:
    ``voi_split = H(pred | truth)``, ``voi_merge = H(truth | pred)``, in bits. ARand precision is the
    fraction of the prediction's same-segment pixel pairs that are also together in the truth, recall
    the converse; scikit-image 0.26 returns these two in swapped order (its issue #6485), the error is
    the same.

Dataset level (:func:`aggregate`)
    Object counts and matched scores are summed over images, then the ratios are recomputed. ARand is
    computed on the pooled pixel pairs (pixels of different images are never in the same segment) and
    VOI is the pixel-weighted mean of the per-image values, which is the VOI of the pooled table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bioseg.errors import BiosegError
from bioseg.metrics.instance_scores import InstanceScores, _size_edges
from bioseg.metrics.matching import _check_threshold, _match_sparse, match_pairs
from bioseg.metrics.overlap import _check_pair, _contingency, _Overlap, _overlap, iou_matrix
from bioseg.metrics.pair_scores import (
    _arand_parts,
    _voi,
    adapted_rand_error,
    variation_of_information,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "DSB_THRESHOLDS",
    "InstanceScores",
    "adapted_rand_error",
    "aggregate",
    "dsb_average_precision",
    "iou_matrix",
    "match_instances",
    "match_pairs",
    "variation_of_information",
]

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DSB_THRESHOLDS: tuple[float, ...] = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
_CRITERIA = ("iou", "iot", "iop")


def _merges_splits(ov: _Overlap) -> tuple[int, int]:
    twice = 2 * ov.inter
    covers_true = twice > ov.true_sizes[ov.rows]  # the pred object covers more than half of the true one
    inside_true = twice > ov.pred_sizes[ov.cols]  # more than half of the pred object lies in the true one
    per_pred = np.bincount(ov.cols[covers_true], minlength=ov.pred_ids.size)
    per_true = np.bincount(ov.rows[inside_true], minlength=ov.true_ids.size)
    return int(np.count_nonzero(per_pred >= 2)), int(np.count_nonzero(per_true >= 2))


def _check_thresholds(thresholds: Sequence[float] | float) -> np.ndarray:
    thr = np.atleast_1d(np.asarray(thresholds, np.float64))
    if thr.ndim != 1 or thr.size == 0:
        raise BiosegError(f"thresholds={thresholds!r}; expected a non-empty list such as [0.5, 0.75]")
    for t in thr:
        _check_threshold(t)
    return thr


def _check_size_bins(size_bins: int | Sequence[float]) -> int | tuple[float, ...]:
    """``size_bins`` as stored on :class:`InstanceScores` (an int or a tuple of edges), validated now
    rather than at the first ``by_size()``."""
    if isinstance(size_bins, int | np.integer):
        size_bins = int(size_bins)
    else:
        try:
            size_bins = tuple(float(x) for x in size_bins)
        except (TypeError, ValueError) as e:
            raise BiosegError(
                f"size_bins={size_bins!r}; expected an int (number of quantile bins) or a list of bin edges"
            ) from e
    _size_edges(np.zeros(0), size_bins)
    return size_bins


def _match_at_thresholds(
    ov: _Overlap, scores: np.ndarray, thr: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Match at each threshold: ``tp`` and total matched score ``(T,)``, and which true and predicted
    objects are matched ``(T, n_true)``, ``(T, n_pred)``."""
    tp = np.zeros(thr.size, np.int64)
    total = np.zeros(thr.size)
    true_matched = np.zeros((thr.size, ov.true_ids.size), bool)
    pred_matched = np.zeros((thr.size, ov.pred_ids.size), bool)
    for k, th in enumerate(thr):
        picked = _match_sparse(ov.rows, ov.cols, scores, th)
        tp[k] = picked.size
        total[k] = scores[picked].sum()
        true_matched[k, ov.rows[picked]] = True
        pred_matched[k, ov.cols[picked]] = True
    return tp, total, true_matched, pred_matched


def match_instances(
    pred: Any,
    truth: Any,
    thresholds: Sequence[float] | float = DEFAULT_THRESHOLDS,
    criterion: str = "iou",
    size_bins: int | Sequence[float] = 3,
) -> InstanceScores:
    """Match predicted objects to true objects at each threshold and score the image.

    Args:
        pred, truth: instance label images of the same shape, ``(Y, X)`` or ``(Z, Y, X)``; 0 is the
            background, ids are any non-negative integers.
        thresholds: minimum score of a matched pair, each in (0, 1].
        criterion: pair score: ``"iou"`` (intersection over union), ``"iot"`` (over the true object's
            size) or ``"iop"`` (over the predicted object's size).
        size_bins: number of quantile bins of the true object sizes, or explicit increasing bin edges
            (in pixels/voxels), used by :meth:`InstanceScores.by_size`.

    See the module docstring for the matching rule and every definition.
    """
    if criterion not in _CRITERIA:
        raise BiosegError(f"criterion={criterion!r} is unknown; expected one of {list(_CRITERIA)}")
    thr = _check_thresholds(thresholds)
    size_bins = _check_size_bins(size_bins)
    p, t = _check_pair(pred, truth)
    ti, pj, c = _contingency(p, t)
    ov = _overlap(ti, pj, c)
    scores = ov.scores(criterion)
    n_true, n_pred = ov.true_ids.size, ov.pred_ids.size
    tp, total, true_matched, pred_matched = _match_at_thresholds(ov, scores, thr)
    merges, splits = _merges_splits(ov)
    split, merge = _voi(ti, pj, c)
    return InstanceScores(
        thresholds=thr,
        tp=tp,
        fp=n_pred - tp,
        fn=n_true - tp,
        sum_matched_iou=total,
        n_true=n_true,
        n_pred=n_pred,
        n_merges=merges,
        n_splits=splits,
        voi_split=split,
        voi_merge=merge,
        n_pixels=int(c.sum()),
        criterion=criterion,
        size_bins=size_bins,
        arand_parts=_arand_parts(ti, pj, c),
        n_fg_pixels=int(c[ti > 0].sum()),
        true_sizes=ov.true_sizes,
        pred_sizes=ov.pred_sizes,
        true_matched=true_matched,
        pred_matched=pred_matched,
    )


def dsb_average_precision(pred: Any, truth: Any) -> float:
    """The 2018 Data Science Bowl score of one image: ``tp / (tp + fp + fn)`` averaged over IoU thresholds
    0.5, 0.55, ..., 0.95 (pairs with IoU >= threshold may match; 1.0 when both images are empty)."""
    return match_instances(pred, truth, thresholds=DSB_THRESHOLDS).average_precision()


def _check_same_scoring(items: list[InstanceScores]) -> None:
    """Pooling is only meaningful when every image was scored at the same thresholds and criterion."""
    first = items[0]
    for i, s in enumerate(items):
        if not isinstance(s, InstanceScores):
            raise BiosegError(f"aggregate item {i} is a {type(s).__name__}; expected InstanceScores")
        if s.thresholds.shape != first.thresholds.shape or not np.allclose(s.thresholds, first.thresholds):
            raise BiosegError(
                f"item {i} was scored at thresholds {s.thresholds.tolist()} but item 0 at "
                f"{first.thresholds.tolist()}; score every image with the same thresholds"
            )
        if s.criterion != first.criterion:
            raise BiosegError(
                f"item {i} uses criterion {s.criterion!r} but item 0 uses {first.criterion!r}; "
                "score every image with the same criterion"
            )


def aggregate(scores: Sequence[InstanceScores]) -> InstanceScores:
    """Dataset-level scores: object counts summed over images, ratios recomputed from the sums.

    All inputs must share thresholds and criterion. Size bins are recomputed on the pooled objects
    (quantile bins therefore use the quantiles of all true objects). ARand uses the pooled pixel pairs;
    VOI is the pixel-weighted mean over images.
    """
    items = list(scores)
    if not items:
        raise BiosegError("aggregate got no scores; pass the InstanceScores of at least one image")
    _check_same_scoring(items)
    first = items[0]
    n_pixels = sum(s.n_pixels for s in items)
    w = np.array([s.n_pixels for s in items], np.float64) / max(n_pixels, 1)
    return InstanceScores(
        thresholds=first.thresholds.copy(),
        tp=np.sum([s.tp for s in items], axis=0),
        fp=np.sum([s.fp for s in items], axis=0),
        fn=np.sum([s.fn for s in items], axis=0),
        sum_matched_iou=np.sum([s.sum_matched_iou for s in items], axis=0),
        n_true=sum(s.n_true for s in items),
        n_pred=sum(s.n_pred for s in items),
        n_merges=sum(s.n_merges for s in items),
        n_splits=sum(s.n_splits for s in items),
        voi_split=float(w @ [s.voi_split for s in items]),
        voi_merge=float(w @ [s.voi_merge for s in items]),
        n_pixels=n_pixels,
        criterion=first.criterion,
        size_bins=first.size_bins,
        n_images=sum(s.n_images for s in items),
        arand_parts=tuple(float(sum(s.arand_parts[k] for s in items)) for k in range(3)),  # type: ignore[arg-type]
        n_fg_pixels=sum(s.n_fg_pixels for s in items),
        true_sizes=np.concatenate([s.true_sizes for s in items]),
        pred_sizes=np.concatenate([s.pred_sizes for s in items]),
        true_matched=np.concatenate([s.true_matched for s in items], axis=1),
        pred_matched=np.concatenate([s.pred_matched for s in items], axis=1),
    )
