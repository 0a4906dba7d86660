"""Callbacks: one metrics.csv row per epoch (kept across resumes) and charts drawn from it.

A row holds the validation scores only of epochs that were validated (``train.val_every``): the cells
of the others are empty, never the last validation carried over.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import lightning as L

from bioseg.reports.history import read_metrics_csv, write_metrics_csv


class EpochMetricsCSV(L.Callback):
    """Writes ``metrics.csv``: epoch, wall time, learning rate and every epoch-level logged metric."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, float]] = []
        self._start = time.monotonic()
        self._elapsed_before = 0.0
        self._validated = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after a resume, keep the rows of the epochs the checkpoint already covers
        self.rows = [r for r in read_metrics_csv(self.path) if r.get("epoch", math.inf) < trainer.current_epoch]
        self._elapsed_before = self.rows[-1].get("time_s", 0.0) if self.rows else 0.0
        self._start = time.monotonic()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validated = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row: dict[str, float] = {
            "epoch": float(trainer.current_epoch),
            "step": float(trainer.global_step),
            "time_s": round(self._elapsed_before + time.monotonic() - self._start, 2),
        }
        if trainer.optimizers:
            row["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        row |= epoch_metrics(trainer, pl_module, validated=self._validated)  # on every process: a collective
        self.rows.append(row)
        if trainer.is_global_zero:  # one process writes the run folder
            write_metrics_csv(self.path, self.rows)


def epoch_metrics(trainer: L.Trainer, pl_module: L.LightningModule, validated: bool) -> dict[str, float]:
    """The epoch-level metrics of the epoch that ends (``_epoch`` suffix dropped): ``val/…`` only when it
    was ``validated`` (Lightning keeps the last validation's values between validations), and this
    epoch's loss terms from the module (it logs them after callbacks have run)."""
    row = {}
    for key, value in trainer.callback_metrics.items():
        if key.endswith("_step") or value.numel() != 1 or (key.startswith("val/") and not validated):
            continue
        row[key.removesuffix("_epoch")] = float(value)
    terms = getattr(pl_module, "epoch_loss_terms", None)
    return row | (terms() if terms is not None else {})


class TrainingCharts(L.Callback):
    """Draws ``charts/`` from ``metrics.csv`` when training ends, also after an interruption."""

    def __init__(self, metrics_csv: Path, charts_dir: Path) -> None:
        self.metrics_csv, self.charts_dir = Path(metrics_csv), Path(charts_dir)

    def draw(self) -> None:
        from bioseg.reports.charts import plot_training_curves

        rows = read_metrics_csv(self.metrics_csv)
        if rows:
            plot_training_curves(rows, self.charts_dir)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.draw()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if trainer.is_global_zero:
            self.draw()
