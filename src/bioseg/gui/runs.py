"""The trained runs a GUI offers: found under the folders it was given, each described in one line."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bioseg import config
from bioseg.data.head_targets import class_names
from bioseg.errors import BiosegError
from bioseg.nn.bundle import read_meta


@dataclass
class RunInfo:
    path: Path  # the run folder, …/fold_0
    name: str
    spatial_dims: int
    in_channels: int
    heads: dict[str, list[str]]  # head → class names
    instances: bool  # post.instances is on: the run predicts objects
    test_scores: dict[str, float] = field(default_factory=dict)  # per head: Dice mean of the test split

    @property
    def label(self) -> str:
        """One line: name, dimensions, heads with their classes, test Dice."""
        heads = "; ".join(f"{h}: {', '.join(c)}" for h, c in self.heads.items())
        named = len(self.test_scores) > 1
        scores = ", ".join(f"{h} {s:.3f}" if named else f"{s:.3f}" for h, s in self.test_scores.items())
        objects = ", objects" if self.instances else ""
        return (f"{self.name} ({self.spatial_dims}D, {self.in_channels} channel(s){objects}) — heads {heads} — "
                f"test Dice {scores or 'not evaluated'}")  # fmt: skip


def _test_scores(run_dir: Path) -> dict[str, float]:
    try:
        doc = json.loads((run_dir / "predictions" / "test" / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    heads = doc.get("heads") or {"": doc}
    return {h or "all": float(s["dataset"]["dice_mean"]) for h, s in heads.items() if "dataset" in s}


def describe_run(run_dir: Path) -> RunInfo:
    """What the GUI shows of the run in ``run_dir`` (a folder holding ``model/``), read from model.json."""
    meta: dict[str, Any] = read_meta(run_dir / "model")
    experiment = meta.get("experiment", {})
    cfg = config.from_dict(experiment)
    heads = {name: class_names(cfg, name) for name in cfg.heads}
    instances = experiment.get("post", {}).get("instances", {}).get("mode", "off") != "off"
    name = f"{experiment.get('name', run_dir.parent.name)}/{run_dir.name}"
    return RunInfo(run_dir, name, meta["model"]["spatial_dims"], meta["model"]["in_channels"], heads, instances,
                   _test_scores(run_dir))  # fmt: skip


def find_runs(folders: Iterable[str | Path]) -> list[RunInfo]:
    """Every trained run under ``folders`` (a run folder itself, or any folder above runs), sorted by path."""
    found: dict[Path, RunInfo] = {}
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise BiosegError(f"{folder} is not a folder; give run folders or folders that hold runs")
        for meta in sorted(folder.rglob("model/model.json")):
            run_dir = meta.parent.parent
            if (meta.parent / "weights.safetensors").is_file() and run_dir.resolve() not in found:
                found[run_dir.resolve()] = describe_run(run_dir)
    if not found:
        raise BiosegError(
            f"no trained run under {', '.join(map(str, folders))}: give a run folder (runs/<name>/fold_0) "
            "or a folder that holds runs"
        )
    return sorted(found.values(), key=lambda r: str(r.path))
