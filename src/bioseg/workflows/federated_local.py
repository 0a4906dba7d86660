"""What a site does in a federated round, on its own data: train the global model for some local
epochs (FedAvg; FedProx adds a proximal term), and score a model on its validation images. Only
weights and scores leave these functions.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch

from bioseg import config as config_mod
from bioseg.config import Experiment
from bioseg.data.checked import checked_data
from bioseg.data.datamodule import SegmentationDataModule
from bioseg.data.dataset import LoadedSample
from bioseg.engine.module import SegmentationModule
from bioseg.engine.trainer import resolve_precision
from bioseg.workflows.federated_sites import site_experiment


class ProximalModule(SegmentationModule):
    """FedProx's local objective: the loss plus ``mu / 2 * ||w - w_global||²`` (Li et al., 2020)."""

    def __init__(self, config: dict[str, Any], mu: float) -> None:
        super().__init__(config)
        self.mu = mu
        self.anchor: list[torch.Tensor] = []  # a list: not a parameter, not in the state dict

    def hold_anchor(self) -> None:
        self.anchor = [p.detach().clone() for p in self.net.parameters()]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx)
        if self.mu == 0:
            return loss
        drift = sum(((p - a) ** 2).sum() for p, a in zip(self.net.parameters(), self.anchor, strict=True))
        return loss + 0.5 * self.mu * drift


@dataclass
class Site:
    """One site's experiment and its images, read once and kept in the site's process."""

    name: str
    cfg: Experiment
    run_dir: Path  # where Lightning may write (nothing is, with checkpoints and loggers off)
    train_samples: list[LoadedSample] = field(default_factory=list)
    val_samples: list[LoadedSample] = field(default_factory=list)

    @classmethod
    def open(cls, name: str, experiment: dict[str, Any], root: Path, run_dir: Path) -> Site:
        cfg = site_experiment(config_mod.from_dict(experiment), root)
        # a constant learning rate within each round: the schedule would restart at every round
        cfg.sched.name, cfg.sched.warmup_epochs = "none", 0.0
        return cls(name, cfg, Path(run_dir))

    def datamodule(self, seed: int) -> SegmentationDataModule:
        cfg = self.cfg.model_copy(deep=True)
        cfg.seed = seed  # other patches every round
        index, split = checked_data(cfg)
        dm = SegmentationDataModule(cfg, index, split, progress=False)
        if not self.train_samples:
            dm.setup()
            self.train_samples, self.val_samples = dm.train_samples, dm.val_samples
        dm.train_samples, dm.val_samples = self.train_samples, self.val_samples
        return dm

    def module(self, state: dict[str, torch.Tensor], mu: float = 0.0) -> ProximalModule:
        module = ProximalModule(config_mod.to_dict(self.cfg), mu)
        module.net.load_state_dict(state)
        module.hold_anchor()
        return module

    def trainer(self, epochs: int, validate: bool = False) -> L.Trainer:
        logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
        t = self.cfg.train
        return L.Trainer(
            default_root_dir=self.run_dir, max_epochs=epochs, precision=resolve_precision(t.precision, t.accelerator),
            gradient_clip_val=t.gradient_clip, accelerator=t.accelerator, devices=1, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            num_sanity_val_steps=0, limit_val_batches=1.0 if validate else 0, deterministic=t.deterministic,
        )  # fmt: skip


def local_fit(
    site: Site, state: dict[str, torch.Tensor], *, epochs: int, server_round: int, proximal_mu: float = 0.0
) -> tuple[dict[str, torch.Tensor], int, float]:
    """Train the global weights ``state`` on the site's training images for ``epochs`` epochs:
    ``(new state, training images, mean training loss of the last epoch)``."""
    L.seed_everything(site.cfg.seed + server_round, workers=True, verbose=False)
    dm = site.datamodule(seed=site.cfg.seed + 1000 * server_round)
    module = site.module(state, proximal_mu)
    trainer = site.trainer(epochs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        warnings.filterwarnings("ignore", ".*is smaller than the logging interval.*")
        warnings.filterwarnings("ignore", ".*overridden `on_after_batch_transfer`.*")
        trainer.fit(module, datamodule=dm)
    loss = float(trainer.callback_metrics.get("train/loss_epoch", torch.tensor(float("nan"))))
    new = {k: v.detach().cpu().contiguous() for k, v in module.net.state_dict().items()}
    return new, len(site.train_samples), loss


def local_validation(site: Site, state: dict[str, torch.Tensor]) -> tuple[dict[str, float], int]:
    """Scores of the weights ``state`` on the site's validation images (as training validates):
    ``({"dice_mean": …, "loss": …, …}, validation images)``."""
    dm = site.datamodule(seed=site.cfg.seed)
    module = site.module(state)
    trainer = site.trainer(1, validate=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        scores = trainer.validate(module, datamodule=dm, verbose=False)[0]
    return {k.removeprefix("val/"): float(v) for k, v in scores.items()}, len(site.val_samples)
