"""Charts of runs compared on one split: test scores per experiment and validation curves."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bioseg.reports.charts import new_figure, save_figure


def finite(values: list[float]) -> list[float]:
    return [v for v in values if isinstance(v, float | int) and math.isfinite(v)]


def summarise(rows: list[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Per experiment (in first-seen order): ``n`` runs and ``<key>_mean``/``<key>_std`` (sample standard
    deviation, 0 for a single run) of every key."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["experiment"], []).append(row)
    out = []
    for name, group in groups.items():
        entry: dict[str, Any] = {"experiment": name, "n": len(group), "folds": " ".join(str(r["fold"]) for r in group)}
        for key in keys:
            values = finite([r.get(key, math.nan) for r in group])
            entry[f"{key}_mean"] = float(np.mean(values)) if values else math.nan
            entry[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0 if values else math.nan
        out.append(entry)
    return out


def _colours(names: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def plot_test_scores(rows: list[dict[str, Any]], keys: list[str], path: Path, split: str = "test") -> Path:
    """Grouped bars: one group per score, one bar per experiment (mean over folds, ± std), a dot per fold."""
    summary = summarise(rows, keys)
    names = [s["experiment"] for s in summary]
    colours = _colours(names)
    width = 0.8 / max(1, len(names))
    fig = new_figure((max(5.5, 1.2 + len(keys) * (0.5 + 0.45 * len(names))), 4.4))
    ax = fig.add_subplot()
    for j, s in enumerate(summary):
        xs = np.arange(len(keys)) + (j - (len(names) - 1) / 2) * width
        means = [s[f"{k}_mean"] for k in keys]
        stds = [s[f"{k}_std"] if s["n"] > 1 else 0.0 for k in keys]
        label = f"{s['experiment']} (n={s['n']})"
        ax.bar(xs, means, width * 0.92, yerr=stds, capsize=3, color=colours[s["experiment"]], alpha=0.85, label=label)
        group = [r for r in rows if r["experiment"] == s["experiment"]]
        for i, k in enumerate(keys):
            values = [r[k] for r in group]
            jitter = np.linspace(-width * 0.2, width * 0.2, len(values)) if len(values) > 1 else [0.0]
            ax.plot(xs[i] + np.asarray(jitter), values, "o", ms=4, color="black", alpha=0.7, zorder=3)
    ax.set_xticks(np.arange(len(keys)), keys)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"{split} score")
    ax.set_title(f"{split} scores (bars: mean over folds, whiskers: std, dots: folds)", fontsize="medium")
    ax.grid(axis="y", alpha=0.3)
    # below the axes, so that no bar is hidden behind it
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=min(3, len(names)), frameon=False)
    return save_figure(fig, path, dpi=110)


def plot_validation_curves(records: Sequence[Any], labels: list[str], path: Path) -> Path:
    """Two panels over epochs: the monitored validation metric and the validation loss, a line per run
    (colour per experiment, line style per fold)."""
    from matplotlib.ticker import MaxNLocator

    colours = _colours(list(dict.fromkeys(labels)))
    monitor = records[0].monitor
    panels = [monitor] + (["val/loss"] if monitor != "val/loss" else [])
    fig = new_figure((5.2 * len(panels), 4.0))
    styles = ["-", "--", ":", "-."]
    for p, key in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), p + 1)
        for label, r in zip(labels, records, strict=True):
            pts = [(row.get("epoch", i), row.get(key, math.nan)) for i, row in enumerate(r.history)]
            pts = [(x, y) for x, y in pts if math.isfinite(y)]
            if not pts:
                continue
            ax.plot(
                [q[0] for q in pts],
                [q[1] for q in pts],
                styles[r.fold % len(styles)],
                marker="o" if len(pts) < 15 else None,
                ms=3,
                color=colours[label],
                label=f"{label} fold {r.fold}" if p == 0 else None,
            )
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(key)
        ax.set_title(key, fontsize="medium")
        ax.grid(alpha=0.3)
        if p == 0:
            ax.legend(fontsize="small")
    return save_figure(fig, path, dpi=110)
