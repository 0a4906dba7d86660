"""Ensembles: several trained models whose probabilities are averaged, pixel by pixel.

Members are any trained runs that read images alike and answer alike: the same spatial dimensions,
input channels, channel selection, normalisation and resizing, and the same heads with the same type
and classes. Their architectures, training data and folds may differ. The usual ensemble is the K folds
of one cross-validated experiment (``bioseg train exp.yaml --fold all``): ``runs/<name>/`` names them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bioseg.config import Experiment
from bioseg.errors import BiosegError
from bioseg.nn.bundle import META, MODEL_DIR, WEIGHTS, ModelBundle


@dataclass
class Member:
    """One network of a prediction: what runs its tiles and the temperature per head its logits are
    divided by before the activation (1: as trained; see ``bioseg calibrate``)."""

    net: torch.nn.Module
    temperature: dict[str, float]
    source: str = "model"

    def scale(self, head: str) -> float:
        return 1.0 / self.temperature.get(head, 1.0)


def temperatures(cfg: Experiment, given: dict[str, float] | None, source: str) -> dict[str, float]:
    """``infer.temperature`` checked against the heads of ``cfg``: a temperature per head, > 0."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(cfg.heads))
    if unknown:
        raise BiosegError(
            f"{source}: infer.temperature names head '{unknown[0]}', which the model does not have "
            f"(heads: {', '.join(cfg.heads)})"
        )
    bad = {h: t for h, t in given.items() if not t > 0}
    if bad:
        head, t = next(iter(bad.items()))
        raise BiosegError(f"{source}: infer.temperature of head '{head}' is {t}; a temperature must be > 0")
    return given


def _signature(cfg: Experiment) -> dict[str, Any]:
    """What members of one ensemble must share, by the name a mismatch is reported under."""
    d = cfg.data
    return {
        "spatial dimensions": cfg.model.spatial_dims,
        "input channels": d.in_channels,
        "channels": d.model_dump(mode="json")["channels"],
        "normalisation": d.model_dump(mode="json")["normalization"],
        "resize": d.resize,
        "heads": list(cfg.heads),
        "head types": {n: h.type for n, h in cfg.heads.items()},
        "classes": {n: h.classes for n, h in cfg.heads.items()},
        "class names": d.classes,
    }


def check_members(configs: list[tuple[str, Experiment]]) -> None:
    """Every member agrees with the first on :func:`_signature`; else one line naming what differs."""
    first_name, first = configs[0]
    reference = _signature(first)
    for name, cfg in configs[1:]:
        for key, value in _signature(cfg).items():
            if value != reference[key]:
                raise BiosegError(
                    f"ensemble members differ in {key}: {first_name} has {reference[key]!r}, {name} has {value!r}; "
                    "an ensemble averages models that read the same images and predict the same heads and classes"
                )


def fold_dirs(path: Path) -> list[Path]:
    """The finished folds of an experiment folder ``runs/<name>/`` (those with a model), in fold order."""
    models = Path(path).glob(f"fold_*/{MODEL_DIR}")
    folds = [p.parent for p in models if (p / META).is_file() and (p / WEIGHTS).is_file()]
    return sorted(folds, key=lambda p: int(p.name.removeprefix("fold_")) if p.name[5:].isdigit() else 1 << 30)


def member_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Run folders (or model folders) as given, each experiment folder expanded to its finished folds."""
    out: list[Path] = []
    for path in map(Path, paths):
        folds = fold_dirs(path) if path.is_dir() and not (path / MODEL_DIR).is_dir() else []
        out += folds if len(folds) > 1 else [path]
    seen = [p.resolve() for p in out]
    twice = next((p for i, p in enumerate(out) if seen[i] in seen[:i]), None)
    if twice is not None:
        raise BiosegError(f"{twice} is named twice among the ensemble members; give each run once")
    return out


def load_members(paths: Iterable[str | Path]) -> list[ModelBundle]:
    """The model bundles of :func:`member_paths`, checked to form one ensemble."""
    bundles = [ModelBundle.load(p) for p in member_paths(paths)]
    check_members([(str(b.run_dir), b.cfg) for b in bundles])
    return bundles


def shared_folds(bundles: list[ModelBundle]) -> bool:
    """Whether the members are folds of the same dataset with different validation images."""
    folds = {(str(b.cfg.data.root), b.cfg.data.fold) for b in bundles}
    roots = {r for r, _ in folds}
    return len(bundles) > 1 and len(roots) == 1 and len(folds) > 1


def check_split(bundles: list[ModelBundle], split: str) -> None:
    """Scores of an ensemble of folds are honest on the test split only: each fold trained on the
    others' validation images."""
    if split != "test" and shared_folds(bundles):
        raise BiosegError(
            f"the ensemble's members are different folds, and each trained on images of the others' '{split}' "
            "split: score or tune it on --split test"
        )
