"""``bioseg sweep``: one training run per value of one config key, scored on the test split.

Each run is named ``<name>-<key>-<i>``; after training it is evaluated on the test split and its per-class
accuracy (recall: the fraction of each class's true pixels predicted as that class, from the confusion
matrix of the saved label images and the masks) is recorded. The chart puts per-class accuracy against the
swept value, e.g. background against foreground accuracy as the cross-entropy class weight of the
foreground grows (weighting one class trades its under-segmentation for over-segmentation).
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bioseg.errors import BiosegError
from bioseg.io.folders import check_output_folder
from bioseg.reports.sweep_charts import plot_sweep, sweep_axis

__all__ = ["SweepResult", "class_recall", "parse_sweep", "sweep"]


@dataclass
class SweepResult:
    key: str
    values: list[Any]
    rows: list[dict[str, Any]]  # per value: index, value, x, run, test scores, recall/<class>
    out_dir: Path
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def run_dirs(self) -> list[Path]:
        return [Path(r["run"]) for r in self.rows]


_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)$")


def _numbers(value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` (no dot) as text: such strings become floats, in lists too."""
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def parse_sweep(text: str) -> tuple[str, list[Any]]:
    """``"loss.0.class_weights=[[1,0.1],[1,10]]"`` → ``("loss.0.class_weights", [[1, 0.1], [1, 10]])``."""
    if "=" not in text:
        raise BiosegError(
            f"--set '{text}' is not KEY=[v1, v2, …] (a key and a list of values); "
            "write e.g. --set 'optim.lr=[1e-3, 1e-2]'"
        )
    key, raw = (part.strip() for part in text.split("=", 1))
    try:
        values = yaml.safe_load(raw)
    except yaml.YAMLError:
        values = None
    if not key or not isinstance(values, list) or not values:
        raise BiosegError(
            f"--set '{text}' must give a YAML list of the values to try, e.g. --set '{key or 'optim.lr'}=[1e-3, 1e-2]'"
        )
    return key, _numbers(values)


def class_recall(run_dir: str | Path, split: str = "test", head: str | None = None) -> dict[str, float]:
    """``{"recall/<class>": …}`` of a run's head (default the first) on ``split``, from the label images
    that ``evaluate_run`` saved in ``predictions/<split>/`` and the dataset's masks. A class without a
    true pixel gets NaN."""
    import tifffile

    from bioseg import config as config_mod
    from bioseg.data.dataset import read_label_mask
    from bioseg.data.head_targets import class_names, make_head_targets
    from bioseg.data.layouts import discover
    from bioseg.data.splits import load_split
    from bioseg.inference.files import output_names
    from bioseg.metrics import confusion_matrix

    run_dir = Path(run_dir)
    cfg = config_mod.load(run_dir / "config.yaml")
    head = head or next(iter(cfg.heads))
    d = cfg.data
    names = load_split(d.splits_dir or Path(d.root) / "splits", d.fold).get(split) or []
    by_name = {s.name: s for s in discover(d.root, d.layout, d.csv).samples}
    classes = cfg.heads[head].classes
    total = np.zeros((classes, classes), np.int64)
    folder = run_dir / "predictions" / split
    for name in names:
        labels_path = folder / output_names(Path(name).name, head, len(cfg.heads) == 1)["labels"]
        if not labels_path.is_file():
            raise BiosegError(f"{labels_path} is missing; run 'bioseg evaluate {run_dir} --split {split}' first")
        pred = tifffile.imread(labels_path).astype(np.int64)
        targets, _ = make_head_targets(read_label_mask(by_name[name].mask, cfg), cfg, with_weights=False)
        total += confusion_matrix(pred, targets[head], classes).numpy()
    true = total.sum(1)
    return {
        f"recall/{c}": float(total[i, i] / true[i]) if true[i] else math.nan
        for i, c in enumerate(class_names(cfg, head))
    }


def sweep(
    config: str | Path | dict[str, Any],
    key: str,
    values: Sequence[Any],
    out: str | Path | None = None,
    *,
    overrides: list[str] | None = None,
    fold: int | None = None,
    split: str = "test",
    reuse: bool = False,
    progress: bool = True,
) -> SweepResult:
    """Train one run per value of ``key`` (with ``overrides`` applied to all), evaluate each on ``split``
    and write ``sweep.csv``, ``sweep.json`` and ``class_accuracy.png`` to ``out`` (default
    ``<output_dir>/<name>-<key>-sweep``). ``reuse``: a run folder that already holds a trained model of the
    same name is evaluated instead of trained again (to finish an interrupted sweep)."""
    from bioseg.config import as_experiment

    if not values:
        raise BiosegError(f"the sweep of {key} has no value; give a list such as [1e-3, 1e-2]")
    fixed = list(overrides or [])
    base = as_experiment(config, fixed)
    out_dir = check_output_folder(Path(out) if out is not None else Path(base.output_dir) / f"{base.name}-{key}-sweep")
    plans = _plan_runs(config, base, key, values, fixed, fold)
    rows = []
    for i, (value, run_overrides, cfg) in enumerate(plans):
        row = {"index": i, "value": value}
        rows.append(row | _train_and_score(config, cfg, run_overrides, fold, split, reuse, progress))
    xs, _, _, _ = sweep_axis(values, key)
    for row, x in zip(rows, xs, strict=True):
        row["x"] = x
    paths = _write_sweep(out_dir, key, values, split, rows)
    return SweepResult(key, list(values), rows, out_dir, paths)


def _plan_runs(config, base, key: str, values: Sequence[Any], fixed: list[str], fold: int | None) -> list[tuple]:
    """``(value, overrides, experiment)`` per value; every value is checked (the config, loss and
    augmentation options with it) before the first run trains."""
    from bioseg.config import as_experiment

    if key.split(".")[0] == "loss" and base.loss is None:
        head = next(iter(base.heads))
        raise BiosegError(
            f"the config has no top-level 'loss' list for {key} to change; write one (e.g. loss: [{{name: ce, "
            f"class_weights: [1, 1]}}, {{name: dice}}]) or sweep heads.{head}.{key}"
        )
    plans = []
    for i, value in enumerate(values):
        run_overrides = [*fixed, f"{key}={json.dumps(value)}", f"name={base.name}-{key}-{i}"]
        try:
            cfg = as_experiment(config, run_overrides, fold=fold)
        except BiosegError as err:
            raise BiosegError(f"{key}={json.dumps(value)} does not make a valid config: {err}") from None
        plans.append((value, run_overrides, cfg))
    return plans


def _train_and_score(config, cfg, run_overrides, fold, split, reuse, progress) -> dict[str, Any]:
    """Train one run (or reuse its finished model) and score it on ``split``: Dice, IoU and recall per class."""
    from bioseg.engine.trainer import train
    from bioseg.workflows.evaluate import evaluate_run

    run_dir = cfg.run_dir
    if not (reuse and (run_dir / "model" / "model.json").is_file()):
        run_dir = train(config, fold=fold, overrides=run_overrides, progress=progress).run_dir
    evaluation = evaluate_run(run_dir, split=split, progress=progress)
    scores = evaluation.scores
    row: dict[str, Any] = {"run": str(run_dir)}
    row.update({k: scores[k] for k in ("dice_mean", "iou_mean", "accuracy")})
    row["dice_mean_over"] = next(iter(evaluation.means.values()), "")
    row.update({k: v for k, v in scores.items() if k.startswith("dice/")})
    row.update(class_recall(run_dir, split))
    return row


def _write_sweep(out_dir: Path, key: str, values: Sequence[Any], split: str, rows: list[dict]) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "sweep.csv", "json": out_dir / "sweep.json"}
    with paths["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "value": json.dumps(r["value"])} for r in rows)
    doc = {"key": key, "values": list(values), "split": split, "runs": rows}
    paths["json"].write_text(json.dumps(doc, indent=2, allow_nan=True))
    paths["chart"] = plot_sweep(rows, key, out_dir / "class_accuracy.png")
    return paths
