"""Calibration of probabilities and the worth of uncertainty maps, pixel by pixel.

- Expected calibration error (ECE): the pixels binned by the confidence of their predicted class (15
  equal bins on [0, 1]); the mean gap between a bin's accuracy and its mean confidence, weighted by its
  share of pixels. 0: a predicted 0.8 is right 80 % of the time.
- AUROC of an uncertainty map for telling wrong pixels from right ones: the chance that a random wrong
  pixel is more uncertain than a random right one (ties count half) — the Mann-Whitney rank statistic.

:class:`CalibrationTally` adds images one at a time in bounded memory: confidences go into the ECE bins
and uncertainties into a fine histogram per outcome, from which the AUROC of the quantised scores is
exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ECE_BINS = 15
#: levels an uncertainty in [0, 1] is quantised to by :class:`CalibrationTally`
LEVELS = 4096


def confidence_and_prediction(
    probs: np.ndarray, head_type: str, threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """The predicted class of ``(K, *spatial)`` probabilities and its probability, both ``(*spatial)``
    (binary head: class 1 above ``threshold``)."""
    if head_type == "binary":
        p = probs[0]
        predicted = (p > threshold).astype(np.int64)
        return np.where(predicted == 1, p, 1 - p), predicted
    return probs.max(0), probs.argmax(0)


def _bin_of(confidence: np.ndarray, bins: int) -> np.ndarray:
    return np.clip((np.asarray(confidence, np.float64) * bins).astype(np.int64), 0, bins - 1)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE of predictions with ``confidence`` in [0, 1] and ``correct`` (bool), any shape."""
    tally = CalibrationTally(bins)
    tally.add(confidence, correct)
    return tally.ece()


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for ``labels`` (bool: the positives), from the ranks with
    ties averaged; NaN when either class is missing."""
    scores, labels = np.asarray(scores, np.float64).ravel(), np.asarray(labels, bool).ravel()
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], scores.size]
    mean_rank = (starts + ends + 1) / 2.0  # ranks from 1; a run of ties shares their mean
    ranks = np.empty(scores.size)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auroc_from_counts(positives: np.ndarray, negatives: np.ndarray) -> float:
    """AUROC from counts per score level (ascending): positives above negatives, ties counting half."""
    positives, negatives = np.asarray(positives, np.float64), np.asarray(negatives, np.float64)
    n_pos, n_neg = positives.sum(), negatives.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    below = np.cumsum(negatives) - negatives  # negatives at lower levels
    return float((positives * (below + negatives / 2)).sum() / (n_pos * n_neg))


class CalibrationTally:
    """ECE bins and uncertainty histograms summed over images (see the module's description)."""

    def __init__(self, bins: int = ECE_BINS, levels: int = LEVELS) -> None:
        self.bins, self.levels = bins, levels
        self.count = np.zeros(bins, np.int64)
        self.confidence = np.zeros(bins)
        self.correct = np.zeros(bins)
        self.wrong_levels = np.zeros(levels, np.int64)
        self.right_levels = np.zeros(levels, np.int64)

    def add(self, confidence: np.ndarray, correct: np.ndarray, uncertainty: np.ndarray | None = None) -> None:
        confidence, correct = np.asarray(confidence).ravel(), np.asarray(correct, bool).ravel()
        which = _bin_of(confidence, self.bins)
        self.count += np.bincount(which, minlength=self.bins)
        self.confidence += np.bincount(which, weights=confidence, minlength=self.bins)
        self.correct += np.bincount(which, weights=correct, minlength=self.bins)
        if uncertainty is not None:
            level = _bin_of(np.asarray(uncertainty).ravel(), self.levels)
            self.wrong_levels += np.bincount(level[~correct], minlength=self.levels)
            self.right_levels += np.bincount(level[correct], minlength=self.levels)

    def ece(self) -> float:
        total = self.count.sum()
        if not total:
            return float("nan")
        return float(np.abs(self.correct - self.confidence).sum() / total)

    def auroc(self) -> float:
        """AUROC of the uncertainty for finding wrong pixels."""
        return auroc_from_counts(self.wrong_levels, self.right_levels)

    def reliability(self) -> dict[str, Any]:
        """Per bin: its edges, pixel count, mean confidence and accuracy (None for an empty bin)."""
        filled = self.count > 0
        safe = np.maximum(self.count, 1)
        return {
            "edges": np.linspace(0, 1, self.bins + 1).tolist(),
            "count": self.count.tolist(),
            "confidence": [float(c) if f else None for c, f in zip(self.confidence / safe, filled, strict=True)],
            "accuracy": [float(a) if f else None for a, f in zip(self.correct / safe, filled, strict=True)],
        }

    def summary(self) -> dict[str, Any]:
        """``ece``, ``uncertainty_auroc`` (None without uncertainties), ``accuracy`` and the bins."""
        errors = int(self.wrong_levels.sum())
        has_uncertainty = errors + int(self.right_levels.sum()) > 0
        area = self.auroc() if has_uncertainty else float("nan")
        return {
            "ece": self.ece(),
            "ece_bins": self.bins,
            "uncertainty_auroc": None if np.isnan(area) else area,
            "accuracy": float(self.correct.sum() / max(self.count.sum(), 1)),
            "reliability": self.reliability(),
        }
