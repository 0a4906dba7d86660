"""Instance segmentation scores: object matching at IoU thresholds, F1/AP/PQ, merges and splits, ARand, VOI.

Everything is derived from one sparse contingency table of (true label, predicted label) pixel counts,
computed in a single pass over the pixels; 2D and 3D label images (any number of dimensions) go through
the same code. Label 0 is the background; other label values need not be sequential. The table and the
IoU matrix live in :mod:`~bioseg.metrics.overlap`, the matching in :mod:`~bioseg.metrics.matching`, ARand
and VOI in :mod:`~bioseg.metrics.pair_scores`; this module ties them into per-threshold scores.

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

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bioseg.errors import BiosegError
from bioseg.metrics.matching import _check_threshold, _match_sparse, match_pairs
from bioseg.metrics.overlap import _check_pair, _contingency, _Overlap, _overlap, iou_matrix
from bioseg.metrics.pair_scores import (
    _arand_from_parts,
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


# ---------------------------------------------------------------------------------------------------------
# scores


def _ratio(num: np.ndarray, den: np.ndarray, nothing: np.ndarray) -> np.ndarray:
    """``num / den``; 0 where ``den`` is 0, and 1 where the image has no object at all (``nothing``)."""
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    out = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return np.where(nothing, 1.0, out)


def _size_edges(true_sizes: np.ndarray, bins: int | Sequence[float]) -> np.ndarray:
    if isinstance(bins, int | np.integer):
        if bins < 1:
            raise BiosegError(f"size_bins={bins}; expected a number of bins >= 1 or a list of bin edges")
        if true_sizes.size == 0:
            return np.zeros(0)
        edges = np.unique(np.quantile(true_sizes.astype(np.float64), np.linspace(0, 1, int(bins) + 1)))
        # repeated sizes can make quantiles coincide; all objects of one size still make one bin
        return edges if edges.size > 1 else np.repeat(edges, 2)
    edges = np.asarray(bins, np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise BiosegError(
            f"size_bins={list(bins)!r}; expected an int (number of quantile bins) or increasing bin "
            "edges with at least two values, e.g. [0, 100, 1000, inf]"
        )
    return edges


def _bin_of(sizes: np.ndarray, edges: np.ndarray) -> np.ndarray:
    # sizes below the first edge go in the first bin, sizes above the last edge in the last one
    return np.searchsorted(edges[1:-1], sizes, side="right")


def _merges_splits(ov: _Overlap) -> tuple[int, int]:
    twice = 2 * ov.inter
    covers_true = twice > ov.true_sizes[ov.rows]  # the pred object covers more than half of the true one
    inside_true = twice > ov.pred_sizes[ov.cols]  # more than half of the pred object lies in the true one
    per_pred = np.bincount(ov.cols[covers_true], minlength=ov.pred_ids.size)
    per_true = np.bincount(ov.rows[inside_true], minlength=ov.true_ids.size)
    return int(np.count_nonzero(per_pred >= 2)), int(np.count_nonzero(per_true >= 2))


@dataclass
class InstanceScores:
    """Matching results of one image (or, from :func:`aggregate`, of a dataset).

    Arrays indexed by threshold have shape ``(T,)``; per-object arrays are kept so that size bins can
    be recomputed on pooled objects. Derived scores are properties; ``to_dict()`` gives a JSON-able view.
    """

    thresholds: np.ndarray  # (T,)
    tp: np.ndarray  # (T,) int
    fp: np.ndarray  # (T,) int
    fn: np.ndarray  # (T,) int
    sum_matched_iou: np.ndarray  # (T,) total score of the matched pairs
    n_true: int
    n_pred: int
    n_merges: int
    n_splits: int
    voi_split: float
    voi_merge: float
    n_pixels: int
    criterion: str = "iou"
    size_bins: int | tuple[float, ...] = 3
    n_images: int = 1
    # pixel-pair counts behind the adapted Rand error (see _arand_parts) and how many truth-fg pixels
    arand_parts: tuple[float, float, float] = (0.0, 0.0, 0.0)
    n_fg_pixels: int = 0
    # per object: sizes (n_true,), (n_pred,); matched at each threshold (T, n_true), (T, n_pred)
    true_sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    pred_sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    true_matched: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool), repr=False)
    pred_matched: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool), repr=False)

    # -- per threshold ------------------------------------------------------------------------------------
    @property
    def _nothing(self) -> bool:
        return self.n_true == 0 and self.n_pred == 0

    @property
    def precision(self) -> np.ndarray:
        return _ratio(self.tp, self.tp + self.fp, self._nothing)

    @property
    def recall(self) -> np.ndarray:
        return _ratio(self.tp, self.tp + self.fn, self._nothing)

    @property
    def f1(self) -> np.ndarray:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn, self._nothing)

    @property
    def accuracy(self) -> np.ndarray:
        """``tp / (tp + fp + fn)``: the Data Science Bowl 2018 "precision" at each threshold."""
        return _ratio(self.tp, self.tp + self.fp + self.fn, self._nothing)

    @property
    def mean_matched_iou(self) -> np.ndarray:
        return _ratio(self.sum_matched_iou, self.tp, self._nothing)

    @property
    def panoptic_quality(self) -> np.ndarray:
        return self.f1 * self.mean_matched_iou

    def average_precision(self, thresholds: Sequence[float] | None = None) -> float:
        """Mean of ``accuracy`` over ``thresholds`` (default: all of this object's thresholds). With
        :data:`DSB_THRESHOLDS` this is the Data Science Bowl 2018 score of the image."""
        idx = self._indices(self.thresholds if thresholds is None else thresholds)
        return float(np.mean(self.accuracy[idx])) if len(idx) else math.nan

    def _indices(self, thresholds: Sequence[float] | np.ndarray) -> list[int]:
        out = []
        for t in np.atleast_1d(np.asarray(thresholds, np.float64)):
            hit = np.flatnonzero(np.isclose(self.thresholds, t, rtol=0, atol=1e-9))
            if hit.size == 0:
                raise BiosegError(
                    f"threshold {t:g} was not scored; scored thresholds are "
                    f"{[round(float(x), 6) for x in self.thresholds]}: "
                    "add it to match_instances(thresholds=...)"
                )
            out.append(int(hit[0]))
        return out

    def at(self, threshold: float) -> dict[str, float | int]:
        """The table row of one threshold."""
        return self.table()[self._indices([threshold])[0]]

    def table(self) -> list[dict[str, float | int]]:
        cols = {
            "tp": self.tp, "fp": self.fp, "fn": self.fn,
            "precision": self.precision, "recall": self.recall, "f1": self.f1, "accuracy": self.accuracy,
            "mean_matched_iou": self.mean_matched_iou, "panoptic_quality": self.panoptic_quality,
        }  # fmt: skip
        rows = []
        for k, t in enumerate(self.thresholds):
            row: dict[str, float | int] = {"threshold": round(float(t), 6)}
            for name, v in cols.items():
                row[name] = int(v[k]) if name in ("tp", "fp", "fn") else float(v[k])
            row["n_true"], row["n_pred"] = self.n_true, self.n_pred
            rows.append(row)
        return rows

    # -- pixel-pair scores --------------------------------------------------------------------------------
    @property
    def _arand(self) -> tuple[float, ...]:
        return _arand_from_parts(*self.arand_parts, self.n_fg_pixels > 0)

    @property
    def adapted_rand_error(self) -> float:
        return self._arand[0]

    @property
    def arand_precision(self) -> float:
        return self._arand[1]

    @property
    def arand_recall(self) -> float:
        return self._arand[2]

    @property
    def voi(self) -> float:
        return self.voi_split + self.voi_merge

    # -- size bins ----------------------------------------------------------------------------------------
    def by_size(self, bins: int | Sequence[float] | None = None) -> dict[str, np.ndarray]:
        """Counts and F1 per object-size bin at every threshold.

        Args:
            bins: number of quantile bins of the true object sizes, or bin edges; default: the
                ``size_bins`` given to :func:`match_instances`.

        Returns:
            ``edges`` ``(B + 1,)``; ``n_true`` and ``n_pred`` ``(B,)``; ``tp``, ``fp``, ``fn``, ``f1``
            ``(B, T)``. A true object is binned by its size; a matched prediction with its partner, an
            unmatched one by its own size. B is 0 when quantile bins are asked of an image without objects.
        """
        edges = _size_edges(self.true_sizes, self.size_bins if bins is None else bins)
        nb, nt = max(edges.size - 1, 0), self.thresholds.size
        out = {k: np.zeros((nb, nt), np.int64) for k in ("tp", "fp", "fn")}
        tb = _bin_of(self.true_sizes, edges)
        pb = _bin_of(self.pred_sizes, edges)
        for b in range(nb):
            in_t, in_p = tb == b, pb == b
            out["tp"][b] = self.true_matched[:, in_t].sum(axis=1)
            out["fn"][b] = (~self.true_matched[:, in_t]).sum(axis=1)
            out["fp"][b] = (~self.pred_matched[:, in_p]).sum(axis=1)
        nothing = (out["tp"] + out["fp"] + out["fn"]) == 0
        return {
            "edges": edges,
            "n_true": np.bincount(tb, minlength=nb)[:nb],
            "n_pred": np.bincount(pb, minlength=nb)[:nb],
            **out,
            "f1": _ratio(2 * out["tp"], 2 * out["tp"] + out["fp"] + out["fn"], nothing),
        }

    def f1_by_size(
        self, threshold: float = 0.5, bins: int | Sequence[float] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(edges (B + 1,), f1 (B,))`` at one threshold (which must be among the scored ones)."""
        k = self._indices([threshold])[0]
        table = self.by_size(bins)
        return table["edges"], table["f1"][:, k]

    # -- export -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: a row per threshold, the threshold-free scores and the size table.
        NaN (undefined) becomes ``None``."""
        size = self.by_size()
        size_rows = []
        for b in range(size["edges"].size - 1):
            size_rows.append(
                {
                    "min_size": float(size["edges"][b]),
                    "max_size": float(size["edges"][b + 1]),
                    "n_true": int(size["n_true"][b]),
                    "n_pred": int(size["n_pred"][b]),
                    **{k: [int(x) for x in size[k][b]] for k in ("tp", "fp", "fn")},
                    "f1": [float(x) for x in size["f1"][b]],
                }
            )
        doc: dict[str, Any] = {
            "criterion": self.criterion,
            "n_images": self.n_images,
            "n_true": self.n_true,
            "n_pred": self.n_pred,
            "thresholds": [round(float(t), 6) for t in self.thresholds],
            "table": self.table(),
            "average_precision": self.average_precision(),
            "n_merges": self.n_merges,
            "n_splits": self.n_splits,
            "adapted_rand_error": self.adapted_rand_error,
            "arand_precision": self.arand_precision,
            "arand_recall": self.arand_recall,
            "voi_split": self.voi_split,
            "voi_merge": self.voi_merge,
            "size_bins": size_rows,
        }
        return _nan_to_none(doc)


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else x
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return x


def _check_thresholds(thresholds: Sequence[float] | float) -> np.ndarray:
    thr = np.atleast_1d(np.asarray(thresholds, np.float64))
    if thr.ndim != 1 or thr.size == 0:
        raise BiosegError(f"thresholds={thresholds!r}; expected a non-empty list such as [0.5, 0.75]")
    for t in thr:
        _check_threshold(t)
    return thr


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
    if isinstance(size_bins, int | np.integer):
        size_bins = int(size_bins)
    else:
        try:
            size_bins = tuple(float(x) for x in size_bins)
        except (TypeError, ValueError) as e:
            raise BiosegError(
                f"size_bins={size_bins!r}; expected an int (number of quantile bins) or a list of bin edges"
            ) from e
    _size_edges(np.zeros(0), size_bins)  # fail now rather than at the first by_size()
    p, t = _check_pair(pred, truth)
    ti, pj, c = _contingency(p, t)
    ov = _overlap(ti, pj, c)
    scores = ov.scores(criterion)
    n_true, n_pred = ov.true_ids.size, ov.pred_ids.size

    tp = np.zeros(thr.size, np.int64)
    total = np.zeros(thr.size)
    true_matched = np.zeros((thr.size, n_true), bool)
    pred_matched = np.zeros((thr.size, n_pred), bool)
    for k, th in enumerate(thr):
        picked = _match_sparse(ov.rows, ov.cols, scores, th)
        tp[k] = picked.size
        total[k] = scores[picked].sum()
        true_matched[k, ov.rows[picked]] = True
        pred_matched[k, ov.cols[picked]] = True
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


def aggregate(scores: Sequence[InstanceScores]) -> InstanceScores:
    """Dataset-level scores: object counts summed over images, ratios recomputed from the sums.

    All inputs must share thresholds and criterion. Size bins are recomputed on the pooled objects
    (quantile bins therefore use the quantiles of all true objects). ARand uses the pooled pixel pairs;
    VOI is the pixel-weighted mean over images.
    """
    items = list(scores)
    if not items:
        raise BiosegError("aggregate got no scores; pass the InstanceScores of at least one image")
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
