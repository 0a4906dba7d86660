"""Cross-validation: every fold of an experiment's split trained in turn, ``runs/<name>/fold_<k>/``.

A fold whose model is written is finished and kept as it is; one that stopped part way (its
``checkpoints/last.ckpt`` without a model) continues from there; the others start. Running the command
again after an interruption therefore picks up where it stopped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bioseg.config import Experiment, as_experiment
from bioseg.data.layouts import discover
from bioseg.engine.trainer import TrainResult, train
from bioseg.errors import BiosegError
from bioseg.nn.bundle import META, MODEL_DIR, WEIGHTS

_VAL_FILE = re.compile(r"fold_(\d+)_val\.txt")


@dataclass
class FoldOutcome:
    """One fold of :func:`train_folds`: ``status`` is ``trained``, ``resumed`` or ``finished before``
    (then ``result`` is None: nothing was trained)."""

    fold: int
    run_dir: Path
    status: str
    result: TrainResult | None = None


def experiment_folds(cfg: Experiment) -> list[int]:
    """The folds of the experiment's split files; ``[0]`` for a dataset that comes split (x/y layout
    with its own validation set) and has no split files."""
    d = cfg.data
    index = discover(d.root, d.layout, d.csv)
    folder = Path(d.splits_dir) if d.splits_dir is not None else Path(index.root) / "splits"
    if not folder.is_dir() and index.presplit and index.presplit.get("train"):
        return [0]
    names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    folds = sorted(int(m.group(1)) for m in map(_VAL_FILE.fullmatch, names) if m)
    if not folds:
        raise BiosegError(f"no split files in {folder} (fold_<k>_val.txt, ...): run `bioseg split {d.root}` first")
    return folds


def is_finished(run_dir: Path) -> bool:
    """Whether a run folder holds its trained model (written when training ends)."""
    return (run_dir / MODEL_DIR / META).is_file() and (run_dir / MODEL_DIR / WEIGHTS).is_file()


def train_folds(
    config: Experiment | dict[str, Any] | str | Path,
    *,
    overrides: list[str] | None = None,
    progress: bool = True,
    on_fold: Callable[[FoldOutcome], None] | None = None,
) -> list[FoldOutcome]:
    """Train every fold of the experiment's split in turn (see the module's description for which are
    skipped or continued); ``on_fold`` hears of each fold as it ends."""
    cfg = as_experiment(config, overrides)
    outcomes = []
    for fold in experiment_folds(cfg):
        fold_cfg = cfg.model_copy(deep=True)
        fold_cfg.data.fold = fold
        run_dir = fold_cfg.run_dir
        if is_finished(run_dir):
            outcome = FoldOutcome(fold, run_dir, "finished before")
        else:
            resume = (run_dir / "checkpoints" / "last.ckpt").is_file()
            result = train(fold_cfg, fold=fold, resume=resume, progress=progress)
            outcome = FoldOutcome(fold, run_dir, "resumed" if resume else "trained", result)
        outcomes.append(outcome)
        if on_fold is not None:
            on_fold(outcome)
    return outcomes
