"""Reliability diagram: accuracy against confidence, per confidence bin, with the share of pixels per bin.

Input is the ``reliability`` document of :meth:`bioseg.metrics.calibration.CalibrationTally.reliability`
(per head), so the chart can be redrawn from a ``metrics.json``. A calibrated model's bars touch the
diagonal; bars below it are over-confident.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bioseg.reports.charts import new_figure, save_figure

__all__ = ["plot_reliability"]


def plot_reliability(curves: Mapping[str, Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """One panel per entry of ``curves`` (e.g. per head, or before/after calibration): bars of accuracy per
    bin, the mean confidence as dots, the diagonal, and the ECE in the panel's title when given."""
    fig = new_figure((4.2 * len(curves), 4.4))
    axes = fig.subplots(1, len(curves), squeeze=False)[0]
    for ax, (name, doc) in zip(axes, curves.items(), strict=True):
        edges = np.asarray(doc["edges"])
        centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
        accuracy = np.array([np.nan if a is None else a for a in doc["accuracy"]])
        confidence = np.array([np.nan if c is None else c for c in doc["confidence"]])
        count = np.asarray(doc["count"], float)
        ax.bar(centres, np.nan_to_num(accuracy), width=width * 0.95, color="#4c72b0", label="accuracy")
        ax.plot(centres, confidence, "o", color="#dd8452", markersize=3, label="mean confidence")
        ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1)
        share = count / max(count.sum(), 1)
        ax.bar(centres, share, width=width * 0.95, bottom=0, color="#55a868", alpha=0.35, label="share of pixels")
        ece = doc.get("ece")
        ax.set_title(f"{name}" + (f" — ECE {ece:.4f}" if ece is not None else ""), fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence of the predicted class")
        ax.set_ylabel("accuracy")
        ax.legend(loc="upper left", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)
