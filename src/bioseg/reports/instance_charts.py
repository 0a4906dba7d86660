"""Charts of instance-segmentation scores: F1 against the IoU matching threshold, overall and by object size.

Inputs are :class:`bioseg.metrics.instance.InstanceScores` or their ``to_dict()`` documents (e.g. read back
from a ``metrics.json``), so charts can be redrawn without the label images. Figures are built on the Agg
canvas, never through pyplot (see :mod:`bioseg.reports.charts`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bioseg.errors import BiosegError
from bioseg.metrics.instance import InstanceScores
from bioseg.reports.charts import new_figure, save_figure

__all__ = ["plot_f1_by_size", "plot_f1_vs_iou"]

_COLUMNS = ("precision", "recall", "f1", "accuracy", "mean_matched_iou", "panoptic_quality")


def _columns(scores: Any, name: str) -> dict[str, np.ndarray]:
    """``{"threshold": (T,), "f1": (T,), ...}`` from InstanceScores or a ``to_dict()`` document."""
    if isinstance(scores, InstanceScores):
        rows = scores.table()
    elif isinstance(scores, Mapping) and isinstance(scores.get("table"), list):
        rows = scores["table"]
    else:
        raise BiosegError(
            f"scores for {name!r} are a {type(scores).__name__}; expected InstanceScores or its to_dict() "
            "(a dict with a 'table' list)"
        )
    if not rows:
        raise BiosegError(f"scores for {name!r} have no thresholds to plot")
    keys = ["threshold", *_COLUMNS]
    missing = [k for k in keys if k not in rows[0]]
    if missing:
        raise BiosegError(f"scores for {name!r} lack the columns {missing}; pass InstanceScores.to_dict()")
    nan = math.nan
    return {k: np.array([nan if r[k] is None else r[k] for r in rows], np.float64) for k in keys}


def _size_table(scores: Any, bins: Any) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """``(thresholds, one dict per size bin with min_size, max_size, n_true, f1 (T,))``."""
    if isinstance(scores, InstanceScores):
        t = scores.by_size(bins)
        rows = [
            {
                "min_size": float(t["edges"][b]),
                "max_size": float(t["edges"][b + 1]),
                "n_true": int(t["n_true"][b]),
                "f1": t["f1"][b],
            }
            for b in range(t["edges"].size - 1)
        ]
        return scores.thresholds, rows
    if bins is not None:
        raise BiosegError("bins can only be changed for InstanceScores, not for a to_dict() document")
    if not (isinstance(scores, Mapping) and "size_bins" in scores and "thresholds" in scores):
        raise BiosegError(
            f"scores are a {type(scores).__name__}; expected InstanceScores or its to_dict() "
            "(with 'thresholds' and 'size_bins')"
        )
    rows = [
        dict(r, f1=np.array([math.nan if v is None else v for v in r["f1"]])) for r in scores["size_bins"]
    ]
    return np.asarray(scores["thresholds"], np.float64), rows


def plot_f1_vs_iou(
    scores_by_name: Mapping[str, InstanceScores | Mapping[str, Any]],
    path: str | Path,
    metric: str = "f1",
    title: str | None = None,
) -> Path:
    """One line per method of a matching score against the IoU threshold, written as a PNG.

    Args:
        scores_by_name: e.g. ``{"bioseg": scores, "Otsu": baseline}``; values are InstanceScores (often
            from :func:`bioseg.metrics.instance.aggregate`) or their ``to_dict()``.
        path: PNG file to write (parent folders created).
        metric: the column to draw: f1, precision, recall, accuracy, mean_matched_iou or panoptic_quality.
        title: optional chart title.

    Returns the path written.
    """
    if metric not in _COLUMNS:
        raise BiosegError(f"metric={metric!r} cannot be plotted; choose one of {list(_COLUMNS)}")
    if not isinstance(scores_by_name, Mapping) or not scores_by_name:
        raise BiosegError(
            "scores_by_name must be a non-empty dict of method name -> scores, e.g. {'bioseg': scores}"
        )
    fig = new_figure((6.0, 4.0))
    ax = fig.add_subplot()
    for name, scores in scores_by_name.items():
        cols = _columns(scores, str(name))
        ax.plot(cols["threshold"], cols[metric], marker="o", markersize=4, label=str(name))
    ax.set_xlabel("IoU threshold")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def plot_f1_by_size(
    scores: InstanceScores | Mapping[str, Any],
    path: str | Path,
    threshold: float = 0.5,
    bins: int | list[float] | None = None,
    title: str | None = None,
) -> Path:
    """F1 by object-size bin, written as a PNG with two panels: F1 against the IoU threshold, one line per
    size bin, and bars of F1 per bin at ``threshold`` (that panel is left out when ``threshold`` was not
    scored).

    Args:
        scores: InstanceScores (one image or an aggregate) or its ``to_dict()``.
        path: PNG file to write (parent folders created).
        threshold: IoU threshold of the bar panel.
        bins: number of quantile bins of the true object sizes, or bin edges; InstanceScores only
            (default: the bins the scores were made with).
        title: optional figure title.
    """
    thresholds, rows = _size_table(scores, bins)
    if not rows:
        raise BiosegError("there are no size bins to plot: the truth has no objects")
    hit = np.flatnonzero(np.isclose(thresholds, threshold, rtol=0, atol=1e-9))
    fig = new_figure((10.0, 4.0) if hit.size else (6.0, 4.0))
    ax = fig.add_subplot(1, 2 if hit.size else 1, 1)
    labels = []
    for r in rows:
        label = f"{r['min_size']:g}–{r['max_size']:g} px (n={r['n_true']})"
        labels.append(label)
        ax.plot(thresholds, r["f1"], marker="o", markersize=4, label=label)
    ax.set_xlabel("IoU threshold")
    ax.set_ylabel("F1")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(title="true object size", fontsize="small")
    if hit.size:
        bar = fig.add_subplot(1, 2, 2)
        values = [float(r["f1"][hit[0]]) for r in rows]
        x = np.arange(len(rows))
        bar.bar(x, values, color="tab:blue")
        for xi, v in zip(x, values, strict=True):
            if math.isfinite(v):
                bar.annotate(f"{v:.2f}", (xi, v), ha="center", va="bottom", fontsize="small")
        bar.set_xticks(x, labels, rotation=20, ha="right", fontsize="small")
        bar.set_ylim(0.0, 1.1)
        bar.set_ylabel(f"F1 at IoU {threshold:g}")
        bar.grid(alpha=0.3, axis="y")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
