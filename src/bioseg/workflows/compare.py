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

from bioseg.errors import BiosegError
from bioseg.io.folders import check_output_folder
from bioseg.reports.comparison_charts import finite, plot_test_scores, plot_validation_curves, summarise

__all__ = ["Comparison", "compare_runs", "expand_runs", "train_and_compare"]

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
    means: str = ""  # what dice_mean averages (metrics.json of this release on), in words


@dataclass
class Comparison:
    out_dir: Path
    rows: list[dict[str, Any]]  # one per run, as in comparison.csv
    summary: list[dict[str, Any]]  # one per experiment: n and mean/std of every score
    paths: dict[str, Path] = field(default_factory=dict)


def expand_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run folders from the arguments: a run folder (``…/fold_0``) as it is, an experiment folder
    (``runs/<name>``) as all of its trained folds, in order."""
    from bioseg.nn.bundle import find_model_dir

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
    from bioseg.reports.history import read_metrics_csv

    cfg = config_mod.load(run_dir / "config.yaml")
    d = cfg.data
    names = load_split(d.splits_dir or Path(d.root) / "splits", d.fold).get(split) or []
    metrics = run_dir / "predictions" / split / "metrics.json"
    if not metrics.is_file():
        from bioseg.workflows.evaluate import evaluate_run

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
        means=str(doc.get("means", "")),
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


def _best(history: list[dict[str, float]], key: str, mode: str = "max") -> float:
    values = finite([row.get(key, math.nan) for row in history])
    if not values:
        return math.nan
    return max(values) if mode == "max" else min(values)


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
    out = check_output_folder(out, "comparison folder")
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
        row["dice_mean_over"] = r.means
        row["epochs"] = int(last["epoch"]) + 1 if math.isfinite(last.get("epoch", math.nan)) else 0
        row["train_time_s"] = last.get("time_s", math.nan)
        row["run"] = str(r.run_dir)
        rows.append(row)
    summary = summarise(rows, [*keys, "best_val"])
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
    from bioseg.config import as_experiment
    from bioseg.engine.trainer import train

    if len(configs) < 1:
        raise BiosegError("--train needs at least one experiment YAML")
    check_output_folder(out, "comparison folder")
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
