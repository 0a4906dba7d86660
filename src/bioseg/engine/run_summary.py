"""The closing summary of a training: the monitored metric, what it averages, and each head's score.

``best val/dice_mean 0.6718 at epoch 12: the mean over the 2 heads (foreground, boundaries) of each
head's Dice mean`` then, per head,
``foreground: Dice 0.9290, over class 1 (foreground); background class 0 (background) left out``: a
number never stands without saying what it is the mean of.
"""

from __future__ import annotations

import math

from bioseg.config import Experiment
from bioseg.data.head_targets import background_class, class_names
from bioseg.metrics import describe_mean

_SCORES = {"dice_mean": "Dice", "iou_mean": "IoU", "accuracy": "pixel accuracy"}


def monitor_meaning(cfg: Experiment, monitor: str) -> str:
    """What ``monitor`` (``train.monitor``, or the training loss without validation images) measures."""
    heads = list(cfg.heads)
    key = monitor.removeprefix("val/")
    if monitor.startswith("train/loss"):
        return "the training loss of the epoch (no validation images; lower is better)"
    if key == "loss":
        return "the validation loss, all heads' losses weighted and summed (lower is better)"
    if key in _SCORES and len(heads) > 1:
        each = _SCORES[key] + (" mean" if key != "accuracy" else "")
        return f"the mean over the {len(heads)} heads ({', '.join(heads)}) of each head's {each}"
    head, _, score = key.rpartition("/")
    head = head or heads[0]
    if score in ("dice_mean", "iou_mean") and head in cfg.heads:
        return f"{_SCORES[score]} of head {head}, {_mean_of(cfg, head)}"
    return monitor


def _mean_of(cfg: Experiment, head: str) -> str:
    return describe_mean(class_names(cfg, head), background_class(cfg, head))


def best_row(history: list[dict[str, float]], monitor: str, mode: str) -> dict[str, float] | None:
    """The epoch row of ``history`` with the best value of ``monitor`` (``max`` or ``min``)."""
    key = monitor.removesuffix("_epoch")
    rows = [r for r in history if not math.isnan(r.get(key, math.nan))]
    if not rows:
        return None
    pick = max if mode == "max" else min
    return pick(rows, key=lambda r: r[key])


def head_scores(cfg: Experiment, row: dict[str, float]) -> dict[str, float]:
    """Each head's validation Dice mean in ``row`` (one head: the overall one), where it was measured."""
    scores = {}
    for head in cfg.heads:
        key = f"val/{head}/dice_mean" if len(cfg.heads) > 1 else "val/dice_mean"
        value = row.get(key, math.nan)
        if not math.isnan(value):
            scores[head] = value
    return scores


def closing_summary(
    cfg: Experiment, history: list[dict[str, float]], monitor: str, mode: str, best: float | None = None
) -> list[str]:
    """Lines that close a training: the best ``monitor`` (``best``, or the best in ``history``), the epoch,
    what it measures, then each head's Dice at that epoch with the classes it averages."""
    row = best_row(history, monitor, mode)
    if row is None and best is None:
        return [f"best {monitor}: n/a (never measured)"]
    value = row[monitor.removesuffix("_epoch")] if row is not None else best
    at = f" at epoch {int(row['epoch']) + 1}" if row is not None and "epoch" in row else ""
    lines = [f"best {monitor} {value:.4f}{at}: {monitor_meaning(cfg, monitor)}"]
    if len(cfg.heads) == 1 and monitor in ("val/dice_mean", f"val/{next(iter(cfg.heads))}/dice_mean"):
        return lines  # the head's Dice is the monitored value: said already
    for head, score in head_scores(cfg, row or {}).items():
        lines.append(f"  {head}: Dice {score:.4f}, {_mean_of(cfg, head)}")
    return lines
