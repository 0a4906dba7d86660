"""One line per epoch, for trainings that show no progress bar (``--no-progress``, output redirected).

``epoch 3/20  step 96  12.4 s (ETA 3 min 31 s)  loss 0.412 (bce 0.201, dice 0.211)  val loss 0.390
val/dice_mean 0.812: foreground 0.930, boundaries 0.694``. The line goes to the logger ``bioseg`` at
INFO, which the command line prints; epochs without validation (``train.val_every``) have no ``val``
part rather than the last validation's values.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import lightning as L

from bioseg.engine.callbacks import epoch_metrics

logger = logging.getLogger("bioseg")


def duration(seconds: float) -> str:
    """``4.2 s``, ``3 min 31 s``, ``1 h 05 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _losses(metrics: dict[str, float], prefix: str) -> str:
    total = metrics.get(f"{prefix}/loss")
    if total is None:
        return ""
    terms = {k.removeprefix(f"{prefix}/loss/"): v for k, v in metrics.items() if k.startswith(f"{prefix}/loss/")}
    totals = [k for k in terms if k.endswith("/total")]
    if len(totals) == 1:  # one head: its total is the loss itself
        del terms[totals[0]]
    parts = f" ({', '.join(f'{k} {v:.3f}' for k, v in terms.items())})" if terms else ""
    return f"{'loss' if prefix == 'train' else 'val loss'} {total:.3f}{parts}"


def _scores(metrics: dict[str, float], heads: list[str], monitor: str) -> str:
    """The monitored value, then each head's Dice mean (one head: the overall one)."""
    parts = []
    if monitor.startswith("val/") and monitor in metrics and monitor != "val/loss":
        parts.append(f"{monitor} {metrics[monitor]:.3f}")
    per_head = [(h, metrics.get(f"val/{h}/dice_mean", metrics.get("val/dice_mean") if len(heads) == 1 else None))
                for h in heads]  # fmt: skip
    shown = ", ".join(f"{h} {v:.3f}" for h, v in per_head if v is not None and not math.isnan(v))
    if shown:
        parts.append(f"Dice {shown}")
    return "  ".join(parts)


def epoch_line(
    epoch: int, epochs: int, step: int, seconds: float, eta: float | None,
    metrics: dict[str, float], heads: list[str], monitor: str,
) -> str:  # fmt: skip
    """The line of one finished epoch (``epoch`` counted from 1); ``metrics`` as logged, ``val/…`` only
    when the epoch was validated."""
    when = duration(seconds) + (f" (ETA {duration(eta)})" if eta is not None else "")
    parts = [f"epoch {epoch}/{epochs}", f"step {step}", when, _losses(metrics, "train")]
    parts += [_losses(metrics, "val"), _scores(metrics, heads, monitor)]
    return "  ".join(p for p in parts if p)


class EpochLog(L.Callback):
    """Says :func:`epoch_line` through ``write`` (default: the logger ``bioseg`` at INFO) after each epoch.

    The ETA is the mean epoch time so far times the epochs left, or the time budget
    (``max_time_minutes``) left when that ends training first."""

    def __init__(
        self, epochs: int, monitor: str, max_time_s: float | None = None, write: Callable[[str], None] | None = None
    ) -> None:
        self.epochs, self.monitor, self.max_time_s = epochs, monitor, max_time_s
        self.write = write or logger.info
        self._start = time.monotonic()
        self._epoch_start = self._start
        self._first_epoch = 0
        self._validated = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.monotonic()
        self._first_epoch = trainer.current_epoch  # after a resume, the time per epoch counts from here

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.monotonic()
        self._validated = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        now = time.monotonic()
        done = trainer.current_epoch + 1
        elapsed = now - self._start
        left = self.epochs - done
        eta = elapsed / max(1, done - self._first_epoch) * left if left > 0 else None
        if eta is not None and self.max_time_s is not None:
            eta = min(eta, max(0.0, self.max_time_s - elapsed))
        metrics = epoch_metrics(trainer, pl_module, validated=self._validated)
        heads = list(pl_module.cfg.heads)
        line = epoch_line(done, self.epochs, trainer.global_step, now - self._epoch_start, eta, metrics, heads,
                          self.monitor)  # fmt: skip
        if trainer.is_global_zero:  # every process computed the metrics (their reduction is collective)
            self.write(line)
