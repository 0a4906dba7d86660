"""``init-config --minutes``: size training by what this machine does in the time the user has.

A training step is measured with the config's network, loss, augmentation and precision. While a step is
too slow for a useful number of steps a minute, the batch and then the patch are halved. The patches per
epoch are chosen so that an epoch takes about a minute, the epochs so that training fits the budget, and
``train.max_time_minutes`` ends it on the budget (the cosine schedule follows the clock), so the epochs
are an upper bound with some spare: training fills the time even where the measurement was pessimistic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bioseg import config as config_mod
from bioseg.config import Experiment
from bioseg.errors import BiosegError

EPOCH_SECONDS = 60.0
MIN_STEPS_PER_EPOCH = 8  # fewer, and an epoch's validation would cost as much as its training
OVERHEAD = 1.2  # validation on whole images and data loading, on top of the training steps (measured ~10-20 %)
#: epochs for this much more than the estimate: a measured step tends to be slower than the steps of a
#: warm training run (0.51 s against 0.44 s on the DSB nuclei), and the clock, not the epoch count, ends it
SPARE = 1.25


@dataclass
class BudgetPlan:
    """What :func:`fit_to_budget` chose, and the measurement it chose it from."""

    minutes: float
    step_seconds: float
    batch_size: int
    patch_size: list[int]
    steps_per_epoch: int
    epochs: int

    def describe(self) -> str:
        return (
            f"a training step of {self.batch_size} × {self.patch_size} took {self.step_seconds:.2f} s here: "
            f"{self.steps_per_epoch} steps an epoch (about {EPOCH_SECONDS:.0f} s with validation), "
            f"up to {self.epochs} epochs, stopped at {self.minutes:g} minutes by train.max_time_minutes"
        )


def _smaller(cfg: Experiment) -> dict[str, Any] | None:
    """The next cheaper setting: half the batch (down to 2), then half the patch (down to twice the
    network's size divisor per axis, in-plane axes only for volumes); None when nothing is left to halve."""
    d = cfg.data
    if d.batch_size > 2:
        return {"batch_size": d.batch_size // 2}
    divisor = _divisor(cfg)
    halved = [
        p // 2 if (p // 2) % q == 0 and p // 2 >= 2 * q and (cfg.model.spatial_dims == 2 or axis > 0) else p
        for axis, (p, q) in enumerate(zip(d.patch_size, divisor, strict=True))
    ]
    return {"patch_size": halved} if halved != d.patch_size else None


def _divisor(cfg: Experiment) -> list[int]:
    levels = len(cfg.model.widths or [16, 32, 64, 128]) - 1
    pools = cfg.model.pool_sizes or [[2] * cfg.model.spatial_dims] * levels
    return [math.prod(p[axis] for p in pools) for axis in range(cfg.model.spatial_dims)]


def fit_to_budget(
    raw: dict[str, Any], minutes: float, measure: Callable[[Experiment], float] | None = None
) -> tuple[dict[str, Any], BudgetPlan]:
    """``raw`` (a resolved config dict) with batch, patch, patches per epoch, epochs and the time limit
    chosen for ``minutes`` of training on this machine; ``measure`` times one step (seconds)."""
    if not minutes > 0:
        raise BiosegError(f"--minutes {minutes}: give the training time you have, e.g. --minutes 30")
    if measure is None:
        from bioseg.engine.step_timing import training_step_seconds as measure
    cfg = config_mod.from_dict(raw)
    seconds = measure(cfg)
    while seconds * MIN_STEPS_PER_EPOCH > EPOCH_SECONDS and (change := _smaller(cfg)) is not None:
        for key, value in change.items():
            setattr(cfg.data, key, value)
        seconds = measure(cfg)
    steps = max(MIN_STEPS_PER_EPOCH, round(EPOCH_SECONDS / OVERHEAD / seconds))
    epochs = max(1, math.ceil(SPARE * minutes * 60 / (steps * seconds * OVERHEAD)))
    cfg.data.patches_per_epoch = steps * cfg.data.batch_size
    cfg.train.epochs = epochs
    cfg.train.max_time_minutes = minutes
    plan = BudgetPlan(minutes, seconds, cfg.data.batch_size, list(cfg.data.patch_size), steps, epochs)
    return config_mod.to_dict(cfg), plan
