"""The per-image (or pooled) result of instance matching, :class:`InstanceScores`, and the scores
derived from its counts: per-threshold ratios, pixel-pair scores, size bins and the JSON-able summary.

The definitions are in :mod:`bioseg.metrics.instance`, which builds these objects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bioseg.errors import BiosegError
from bioseg.metrics.pair_scores import _arand_from_parts

__all__ = ["InstanceScores"]


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


@dataclass
class InstanceScores:
    """Matching results of one image (or, from :func:`~bioseg.metrics.instance.aggregate`, of a dataset).

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
                ``size_bins`` given to :func:`~bioseg.metrics.instance.match_instances`.

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
