"""The sweep chart: per-class accuracy against the swept value, on an axis that suits the values."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bioseg.reports.charts import new_figure, save_figure


def sweep_axis(values: Sequence[Any], key: str = "value") -> tuple[list[float], str, bool, list[str] | None]:
    """Where each value goes on the chart's x axis: ``(xs, x label, log scale, tick labels or None)``.

    Numbers are used as they are; lists of numbers in which one element changes are placed by that element
    (``[1, 0.01]``, ``[1, 10]`` → 0.01, 10 on ``key[1]``); anything else is placed by its index and named
    by its text. The axis is logarithmic when the numbers are positive and span more than a factor of 20.
    """

    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    xs: list[float] | None = None
    label = key
    if all(number(v) for v in values):
        xs = [float(v) for v in values]
    elif all(isinstance(v, list) and v and all(number(u) for u in v) for v in values):
        if len({len(v) for v in values}) == 1:
            changing = [i for i in range(len(values[0])) if len({v[i] for v in values}) > 1]
            if len(changing) == 1:
                xs, label = [float(v[changing[0]]) for v in values], f"{key}[{changing[0]}]"
    if xs is None:
        return [float(i) for i in range(len(values))], key, False, [json.dumps(v) for v in values]
    log = all(x > 0 for x in xs) and max(xs) / min(xs) > 20
    return xs, label, log, None


def plot_sweep(rows: list[dict[str, Any]], key: str, path: str | Path, title: str | None = None) -> Path:
    """Per-class accuracy (recall) against the swept value, the test Dice (mean of the foreground classes)
    dashed, on the axis that :func:`sweep_axis` chooses."""
    xs, label, log, ticks = sweep_axis([r["value"] for r in rows], key)
    order = np.argsort(xs)
    classes = [k for k in rows[0] if k.startswith("recall/")]
    fig = new_figure((6.4, 4.4))
    ax = fig.add_subplot()
    for k in classes:
        ys = [rows[i][k] for i in order]
        ax.plot([xs[i] for i in order], ys, "-o", ms=5, lw=1.8, label=f"{k.removeprefix('recall/')} accuracy")
    ax.plot(
        [xs[i] for i in order], [rows[i]["dice_mean"] for i in order], "--", color="grey", lw=1.2, label="Dice (mean)"
    )
    if log:
        ax.set_xscale("log")
    if ticks is not None:
        ax.set_xticks(xs, ticks, rotation=20 if max(len(t) for t in ticks) > 8 else 0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(label)
    ax.set_ylabel("test accuracy per class (recall)")
    ax.set_title(title or f"per-class accuracy against {label}", fontsize="medium")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return save_figure(fig, path, dpi=110)
