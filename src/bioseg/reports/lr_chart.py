"""The learning-rate range test's chart."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bioseg.reports.charts import new_figure, save_figure


def plot_lr_find(result: Any, path: str | Path) -> Path:
    """Loss against learning rate (log axis), the suggestion marked, the config's current rate dashed.

    ``result``: a range test's ``lrs``, ``losses`` (smoothed), ``raw_losses``, ``suggestion``, ``current_lr``.
    """
    pts = [(lr, loss) for lr, loss in zip(result.lrs, result.losses, strict=True) if math.isfinite(loss)]
    fig = new_figure((6.4, 4.2))
    ax = fig.add_subplot()
    if result.raw_losses:
        raw = [(lr, v) for lr, v in zip(result.lrs, result.raw_losses, strict=True) if math.isfinite(v)]
        ax.plot([p[0] for p in raw], [p[1] for p in raw], ".", color="tab:blue", alpha=0.3, ms=4, label="loss per step")
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color="tab:blue", lw=1.8, label="loss (smoothed)")
        lows = sorted(p[1] for p in pts)
        low = min([lows[0], *(v for v in result.raw_losses or [] if math.isfinite(v))])
        # the divergence at the top would flatten the interesting part: cap the axis above the start
        top = max(pts[0][1], lows[len(lows) // 2]) * 1.3
        ax.set_ylim(low - 0.05 * (top - low), top)
    if result.suggestion is not None:
        near = min(pts, key=lambda p: abs(math.log(p[0]) - math.log(result.suggestion))) if pts else None
        ax.axvline(result.suggestion, color="tab:red", lw=1, alpha=0.6)
        if near is not None:
            ax.plot([near[0]], [near[1]], "o", color="tab:red", ms=8, label=f"suggested lr {result.suggestion:.2e}")
    if result.current_lr is not None:
        ax.axvline(result.current_lr, color="grey", ls="--", lw=1, label=f"config optim.lr {result.current_lr:.2e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title("learning-rate range test")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return save_figure(fig, path, dpi=110)
