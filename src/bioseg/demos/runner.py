"""The pipeline every demo runs: generate → check → split → configure → train → predict and evaluate.

A demo says what differs in a :class:`Plan` (its data generator, its experiment, what each step says);
:func:`run` does the rest, with numbered log lines, and hands back an :class:`Outcome` that the demo
reports its own scores from. The output folder is the same for every demo: ``data/`` (the generated
dataset and its splits), ``<name>.yaml`` (the experiment) and ``runs/`` (the run folder).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bioseg.errors import BiosegError
from bioseg.io.folders import check_output_folder

if TYPE_CHECKING:
    from bioseg.data.layouts import DatasetIndex
    from bioseg.engine.trainer import TrainResult
    from bioseg.workflows.evaluate import EvalResult

Log = Callable[[str], None]


@dataclass(frozen=True)
class Folders:
    """Where a demo writes: ``out`` holds ``data`` (the generated dataset) and ``runs`` (the run folder)."""

    out: Path
    data: Path
    runs: Path


def folders(out_dir: str | Path) -> Folders:
    """The demo's folders under ``out_dir``; refuses a folder that already holds a demo run."""
    out = check_output_folder(Path(out_dir).resolve(), "demo folder")
    if (out / "runs").exists():
        raise BiosegError(f"{out} already holds a demo run; remove it or pass -o NEW_FOLDER")
    return Folders(out, out / "data", out / "runs")


class Steps:
    """Numbered log lines: the second call of ``steps("checking")`` in a 6-step demo logs ``2/6 checking``;
    ``steps("predicting", "evaluating")`` counts two steps in one line (``5/6 predicting and 6/6 evaluating``)."""

    def __init__(self, total: int, log: Log) -> None:
        self.total, self.log, self.done = total, log, 0

    def __call__(self, *parts: str) -> None:
        numbered = []
        for part in parts:
            self.done += 1
            numbered.append(f"{self.done}/{self.total} {part}")
        self.log(" and ".join(numbered))


@dataclass(frozen=True)
class Plan:
    """What one demo does differently from the others.

    ``generate`` writes the dataset into the folder it is given; ``generating`` is what the first step
    says (``{data}`` stands for that folder). ``experiment``: the resolved experiment as a dict, or None
    for the one ``init-config`` infers from the data; ``overrides`` (``key=value``) are applied on top
    by training. ``check``: :func:`~bioseg.data.validate.check_dataset`'s options. ``split``: False when
    the data comes split into train/val/test folders. ``training`` and ``evaluating`` are what those
    steps say; ``steps`` counts every step, the demo's own last ones included.
    """

    name: str
    generate: Callable[[Path], object]
    generating: str
    header: str
    experiment: Mapping[str, Any] | None = None
    overrides: Sequence[str] = ()
    check: Mapping[str, Any] = field(default_factory=dict)
    checking: str = "checking the dataset"
    split: bool = True
    training: str = "training"
    evaluating: tuple[str, ...] = ("predicting", "evaluating the test images")
    steps: int = 6


@dataclass
class Outcome:
    """What a demo run left: its folders and config, the training result (``run_dir``, ``history``,
    ``monitor``), the test evaluation, the seconds of training, the torch threads it ran on, and the
    step counter for the demo's own last steps."""

    folders: Folders
    config_path: Path
    result: TrainResult
    evaluation: EvalResult
    train_s: float
    threads: int
    steps: Steps
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


def run(
    plan: Plan, out_dir: str | Path, log: Log = print, progress: bool = True, threads: int | None = None
) -> Outcome:
    """Generate → check → split → write the experiment → train → predict and evaluate the test split.

    ``threads``: torch threads for training and evaluation (None: see :func:`torch_threads`).
    """
    from bioseg.data.splits import make_splits
    from bioseg.engine.trainer import train
    from bioseg.workflows.evaluate import evaluate_run

    where = folders(out_dir)
    started = time.monotonic()
    steps = Steps(plan.steps, log)
    steps(plan.generating.format(data=where.data))
    plan.generate(where.data)
    steps(plan.checking)
    index = check_generated(where.data, **plan.check)
    if plan.split:
        steps("splitting: 20% test, then train/validation")
        make_splits(index, folds=1, test_split=0.2, val_split=0.15, seed=0)
    config_path = write_experiment(plan, where)
    with torch_threads(threads) as n_threads:
        steps(f"{plan.training}, {n_threads} thread{'s' if n_threads > 1 else ''} (config: {config_path})")
        train_start = time.monotonic()
        result = train(config_path, overrides=list(plan.overrides), progress=progress)
        train_s = time.monotonic() - train_start
        steps(*plan.evaluating)
        evaluation = evaluate_run(result.run_dir, split="test", progress=progress)
    return Outcome(where, config_path, result, evaluation, train_s, n_threads, steps, started)


def check_generated(data_dir: Path, **options: Any) -> DatasetIndex:
    """The generated dataset's index, after :func:`~bioseg.data.validate.check_dataset` with ``options``
    found nothing wrong; else a BiosegError that lists every problem (a bug in the generator)."""
    from bioseg.data.layouts import discover
    from bioseg.data.validate import check_dataset

    index = discover(data_dir)
    report = check_dataset(index, **options)
    if not report.ok:
        raise BiosegError("the generated demo data failed its own check: " + "; ".join(report.problems))
    return index


def write_experiment(plan: Plan, where: Folders) -> Path:
    """``<out>/<name>.yaml``: the plan's experiment, or the one init-config infers from the data."""
    from bioseg.workflows.init_config import infer_config, write_config

    if plan.experiment is None:
        cfg = infer_config(where.data, name=plan.name)
        cfg["output_dir"] = str(where.runs)
    else:
        cfg = dict(plan.experiment)
    path = where.out / f"{plan.name}.yaml"
    write_config(cfg, path, header=plan.header)
    return path


#: the demos by the name ``bioseg demo`` knows them by: module and function, imported when run
DEMOS: dict[str, tuple[str, str]] = {
    "cells": ("bioseg.demos.cells", "run_demo"),
    "3d": ("bioseg.demos.volumes", "run_demo_3d"),
    "multitask": ("bioseg.demos.multitask", "run_demo_multitask"),
}


def launch(name: str, out_dir: str | Path, log: Log = print, progress: bool = True) -> dict[str, float]:
    """Run the demo called ``name`` (a key of :data:`DEMOS`) at its default budget; its scores."""
    from importlib import import_module

    if name not in DEMOS:
        raise BiosegError(f"there is no demo '{name}'; choose one of {', '.join(DEMOS)}")
    module, function = DEMOS[name]
    return getattr(import_module(module), function)(out_dir, log=log, progress=progress)


def free_cores() -> int:
    """Cores that other processes leave idle, at least 1: the CPU count minus the 1-minute load average,
    less the one unit of it that is this process's own work (generating the data, or the setup just
    before): counting it would halve the threads of a demo run right after installing."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        return cores
    others = max(0.0, load - 1.0)
    return max(1, min(cores, int(cores - others + 0.5)))


@contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` intra-op threads (None: torch's count, capped at the free cores),
    then restore the previous count. OpenMP threads that share busy cores wait on each other: on a
    2-core machine running two other jobs, a training step took 5.6 s with 2 threads and 0.8 s with 1."""
    import torch

    before = torch.get_num_threads()
    n = int(threads) if threads else min(before, free_cores())
    torch.set_num_threads(max(1, n))
    try:
        yield n
    finally:
        torch.set_num_threads(before)
