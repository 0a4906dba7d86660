"""The learning-rate range test on an experiment's training data: Lightning's tuner with a module that
records each step's loss. The chart, the suggestion and the CLI live in :mod:`bioseg.workflows.lr_find`."""

from __future__ import annotations

import logging
import tempfile
import warnings
from typing import Any

import lightning as L
from lightning.pytorch.tuner import Tuner

from bioseg import config as config_mod
from bioseg.config import Experiment
from bioseg.data.checked import checked_data
from bioseg.data.datamodule import SegmentationDataModule
from bioseg.engine.module import SegmentationModule
from bioseg.engine.trainer import resolve_precision
from bioseg.errors import BiosegError


def _range_test_module(cfg: Experiment):
    """A SegmentationModule that records each step's raw loss, and whose non-finite loss ends the test
    instead of raising: at the top of the range the loss is expected to diverge."""
    class RangeTestModule(SegmentationModule):
        def __init__(self, config: dict[str, Any]) -> None:
            super().__init__(config)
            self.raw_losses: list[float] = []

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            loss = super().training_step(batch, batch_idx)
            self.raw_losses.append(float(loss.detach()))
            return loss

        def _stop_on_nan(self, loss: Any) -> None:
            self.trainer.should_stop = True

    return RangeTestModule(config_mod.to_dict(cfg))


def range_test(
    cfg: Experiment, *, min_lr: float, max_lr: float, steps: int, progress: bool = True
) -> tuple[list[float], list[float]]:
    """``(learning rates, loss of every batch)`` of ``steps`` training steps with the rate growing
    exponentially from ``min_lr`` to ``max_lr``. The batches come from the fold's training images (the
    patches per epoch are raised so that they fit in one epoch); validation does not run, and nothing is
    written outside a temporary folder."""
    index, split = checked_data(cfg)
    t = cfg.train
    needed = steps * cfg.data.batch_size * t.accumulate_grad_batches
    cfg.data.patches_per_epoch = max(cfg.data.patches_per_epoch, needed)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = SegmentationDataModule(cfg, index, {"train": split["train"], "val": []})
    datamodule.setup("fit")
    module = _range_test_module(cfg)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch.tuner.lr_finder").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bioseg-lr-find-") as tmp, warnings.catch_warnings():
        for message in ("does not have many workers", "is smaller than the logging interval",
                        "overridden `on_after_batch_transfer`", "no `val_dataloader`", "LeafSpec", "weights_only"):
            warnings.filterwarnings("ignore", f".*{message}.*")
        trainer = L.Trainer(
            default_root_dir=tmp,
            max_epochs=steps,  # the tuner stops after `steps` steps; epochs only bound it
            precision=resolve_precision(t.precision, t.accelerator),
            gradient_clip_val=t.gradient_clip,
            accumulate_grad_batches=t.accumulate_grad_batches,
            accelerator=t.accelerator,
            devices=t.devices,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=progress,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
        )
        finder = Tuner(trainer).lr_find(
            module,
            train_dataloaders=datamodule.train_dataloader(),
            min_lr=min_lr,
            max_lr=max_lr,
            num_training=steps,
            mode="exponential",
            update_attr=False,
        )
    if finder is None or not finder.results.get("lr"):
        raise BiosegError("the learning-rate range test recorded no step; check data.patches_per_epoch")
    return [float(v) for v in finder.results["lr"]], module.raw_losses
