"""``bioseg compare``: finished runs side by side on the same test split.

Per run: the test scores of ``predictions/<split>/metrics.json`` (computed with ``evaluate_run`` when
missing) and the validation curves of ``metrics.csv``. Runs of one experiment (``runs/<name>/fold_<k>``)
are grouped, so that folds give a spread: mean ± standard deviation, and a dot per fold in the chart.

Writes ``comparison.csv`` (one row per run), ``comparison.md`` (per experiment, then per run),
``test_scores.png`` (bars with the fold spread) and ``validation_curves.png``.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bioseg.errors import BiosegError

__all__ = ["Comparison", "compare_runs", "expand_runs", "summarise", "train_and_compare"]

SCORES = ("dice_mean", "iou_mean", "accuracy")


@dataclass
class RunRecord:
    run_dir: Path
    experiment: str
    fold: int
    scores: dict[str, float]  # test scores, dataset level (first head)
    history: list[dict[str, float]]  # metrics.csv rows
    monitor: str
    test_names: list[str]
    data_root: str


@dataclass
class Comparison:
    out_dir: Path
    rows: list[dict[str, Any]]  # one per run, as in comparison.csv
    summary: list[dict[str, Any]]  # one per experiment: n and mean/std of every score
    paths: dict[str, Path] = field(default_factory=dict)


def expand_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run folders from the arguments: a run folder (``…/fold_0``) as it is, an experiment folder
    (``runs/<name>``) as all of its trained folds, in order."""
    from bioseg.engine.run_folder import find_model_dir

    runs: list[Path] = []
    for p in map(Path, paths):
        folds = sorted(p.glob("fold_*/model/model.json"))
        if not (p / "model").is_dir() and folds:
            runs += [f.parent.parent for f in folds]
        else:
            runs.append(find_model_dir(p).parent)
    unique = list(dict.fromkeys(r.resolve() for r in runs))
    if not unique:
        raise BiosegError("no run folder given; pass run folders such as runs/<name>/fold_0")
    return unique


def _load_run(run_dir: Path, split: str, progress: bool) -> RunRecord:
    from bioseg import config as config_mod
    from bioseg.data.splits import load_split
    from bioseg.engine.callbacks import read_metrics_csv

    cfg = config_mod.load(run_dir / "config.yaml")
    d = cfg.data
    names = load_split(d.splits_dir or Path(d.root) / "splits", d.fold).get(split) or []
    metrics = run_dir / "predictions" / split / "metrics.json"
    if not metrics.is_file():
        from bioseg.evaluation import evaluate_run

        evaluate_run(run_dir, split=split, progress=progress)
    doc = json.loads(metrics.read_text())
    return RunRecord(
        run_dir=run_dir,
        experiment=cfg.name,
        fold=d.fold,
        scores={k: float(v) for k, v in doc["dataset"].items()},
        history=read_metrics_csv(run_dir / "metrics.csv"),
        monitor=cfg.train.monitor,
        test_names=sorted(names),
        data_root=str(Path(d.root).resolve()),
    )


def _labels(records: list[RunRecord]) -> list[str]:
    """Experiment labels: the run name, with its parent folder where two experiment folders share it."""
    folders: dict[str, set[Path]] = {}
    for r in records:
        folders.setdefault(r.experiment, set()).add(r.run_dir.parent)
    return [
        r.experiment if len(folders[r.experiment]) == 1 else f"{r.run_dir.parent.parent.name}/{r.experiment}"
        for r in records
    ]


def _check_same_split(records: list[RunRecord], split: str) -> None:
    first = records[0]
    for r in records[1:]:
        if (r.data_root, r.test_names) != (first.data_root, first.test_names):
            raise BiosegError(
                f"{r.run_dir} was scored on another {split} split than {first.run_dir} "
                f"({len(r.test_names)} images of {r.data_root} vs {len(first.test_names)} of {first.data_root}); "
                "compare runs trained on one dataset and split (see 'bioseg compare --train'), "
                "or pass --any-split"
            )


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if isinstance(v, float | int) and math.isfinite(v)]


def _best(history: list[dict[str, float]], key: str, mode: str = "max") -> float:
    values = _finite([row.get(key, math.nan) for row in history])
    if not values:
        return math.nan
    return max(values) if mode == "max" else min(values)


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
            values = _finite([r.get(key, math.nan) for r in group])
            entry[f"{key}_mean"] = float(np.mean(values)) if values else math.nan
            entry[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0 if values else math.nan
        out.append(entry)
    return out


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _markdown(summary: list[dict[str, Any]], rows: list[dict[str, Any]], keys: list[str], split: str) -> str:
    n_test = rows[0]["n_test"] if rows else 0
    lines = [f"# Comparison on the {split} split ({n_test} images)", "", "## Experiments (mean ± std over folds)", ""]
    lines.append("| experiment | runs | " + " | ".join(keys) + " |")
    lines.append("|---|---:|" + "---:|" * len(keys))
    for s in summary:
        cells = []
        for k in keys:
            mean, std = s[f"{k}_mean"], s[f"{k}_std"]
            cells.append(_fmt(mean) if s["n"] == 1 or math.isnan(std) else f"{mean:.4f} ± {std:.4f}")
        lines.append(f"| {s['experiment']} | {s['n']} | " + " | ".join(cells) + " |")
    run_keys = ["experiment", "fold", *keys, "best_val", "epochs", "train_time_s"]
    lines += ["", "## Runs", "", "| " + " | ".join(run_keys) + " | run |"]
    lines.append("|---|" + "---:|" * (len(run_keys) - 1) + "---|")
    for r in rows:
        cells = [_fmt(r.get(k, ""), 1 if k == "train_time_s" else 4) for k in run_keys]
        lines.append("| " + " | ".join(cells) + f" | `{r['run']}` |")
    return "\n".join(lines) + "\n"


def compare_runs(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    *,
    split: str = "test",
    any_split: bool = False,
    progress: bool = True,
) -> Comparison:
    """Compare finished runs (or experiment folders, for all their folds) on one split; see the module
    docstring for what is written to ``out``."""
    runs = expand_runs(run_dirs)
    records = [_load_run(r, split, progress) for r in runs]
    if not any_split:
        _check_same_split(records, split)
    labels = _labels(records)
    per_class = [k for k in records[0].scores if k.startswith(("dice/", "iou/"))]
    keys = [*SCORES, *(k for k in per_class if all(k in r.scores for r in records))]
    rows = []
    for label, r in zip(labels, records, strict=True):
        last = r.history[-1] if r.history else {}
        row: dict[str, Any] = {"experiment": label, "fold": r.fold, "n_test": len(r.test_names)}
        row.update({k: r.scores.get(k, math.nan) for k in keys})
        row["best_val"] = _best(r.history, r.monitor, "min" if "loss" in r.monitor else "max")
        row["monitor"] = r.monitor
        row["epochs"] = int(last["epoch"]) + 1 if math.isfinite(last.get("epoch", math.nan)) else 0
        row["train_time_s"] = last.get("time_s", math.nan)
        row["run"] = str(r.run_dir)
        rows.append(row)
    summary = summarise(rows, [*keys, "best_val"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "comparison.csv", "markdown": out / "comparison.md"}
    with paths["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    paths["markdown"].write_text(_markdown(summary, rows, list(SCORES), split))
    paths["scores"] = plot_test_scores(rows, list(SCORES), out / "test_scores.png", split)
    paths["curves"] = plot_validation_curves(records, labels, out / "validation_curves.png")
    return Comparison(out, rows, summary, paths)


def _colours(names: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def plot_test_scores(rows: list[dict[str, Any]], keys: list[str], path: Path, split: str = "test") -> Path:
    """Grouped bars: one group per score, one bar per experiment (mean over folds, ± std), a dot per fold."""
    from bioseg.reports.charts import _new_figure

    summary = summarise(rows, keys)
    names = [s["experiment"] for s in summary]
    colours = _colours(names)
    width = 0.8 / max(1, len(names))
    fig = _new_figure((max(5.5, 1.2 + len(keys) * (0.5 + 0.45 * len(names))), 4.4))
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
    fig.savefig(path, dpi=110)
    return path


def plot_validation_curves(records: list[RunRecord], labels: list[str], path: Path) -> Path:
    """Two panels over epochs: the monitored validation metric and the validation loss, a line per run
    (colour per experiment, line style per fold)."""
    from matplotlib.ticker import MaxNLocator

    from bioseg.reports.charts import _new_figure

    colours = _colours(list(dict.fromkeys(labels)))
    monitor = records[0].monitor
    panels = [monitor] + (["val/loss"] if monitor != "val/loss" else [])
    fig = _new_figure((5.2 * len(panels), 4.0))
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
    fig.savefig(path, dpi=110)
    return path


def train_and_compare(
    configs: Sequence[str | Path],
    out: str | Path,
    *,
    overrides: list[str] | None = None,
    folds: Sequence[int] | None = None,
    progress: bool = True,
) -> Comparison:
    """Train every config (on each of ``folds``, default each config's ``data.fold``) and compare the runs.

    The configs must share the dataset and its split files, so that every run is scored on the same test
    images; their names must differ, as each names its run folder.
    """
    from bioseg.engine.trainer import as_experiment, train

    if len(configs) < 1:
        raise BiosegError("--train needs at least one experiment YAML")
    cfgs = [as_experiment(c, overrides) for c in configs]
    where = {(str(Path(c.data.root).resolve()), str(c.data.splits_dir or "")) for c in cfgs}
    if len(where) > 1:
        listed = "; ".join(f"{p}: data.root {c.data.root}" for p, c in zip(configs, cfgs, strict=True))
        raise BiosegError(
            f"the configs use different data or split files ({listed}); give them the same data.root and "
            "data.splits_dir so that every run sees the same test images"
        )
    names = [c.name for c in cfgs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BiosegError(
            f"several configs are named '{twice[0]}', so their runs would share a folder; give each a name"
        )
    runs = []
    for path, cfg in zip(configs, cfgs, strict=True):
        for fold in folds if folds else [cfg.data.fold]:
            runs.append(train(path, fold=fold, overrides=overrides, progress=progress).run_dir)
    return compare_runs(runs, out, progress=progress)
