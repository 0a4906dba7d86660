"""Differentially private training (``train.privacy``) with Opacus: DP-SGD as Opacus defines it.

- The privacy unit is one training image. Each step draws every image with probability
  ``batch_size / images`` (Opacus's Poisson sampling, ``DPDataLoader``) and takes one patch of each.
- The loss is computed image by image and averaged: the batch-wide Dice sums of ordinary training
  would make one image's gradient depend on the others, and per-image clipping would then bound
  nothing. Opacus's hooks compute each image's gradient, clip it to ``max_grad_norm`` and add noise.
- Layers that mix images (BatchNorm) cannot be trained so: ``model.norm`` becomes ``group`` in the
  config, with one line, so the saved model is built from its own description like any other run;
  other layers Opacus refuses are named in one error.
- The spent epsilon (Rényi DP accountant) is logged per epoch (``privacy/epsilon`` in metrics.csv,
  ``charts/privacy.png``); training stops before a step would pass ``target_epsilon``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from bioseg.config import Experiment
from bioseg.data.datamodule import SegmentationDataModule
from bioseg.data.dataset import PatchDataset
from bioseg.engine.module import SegmentationModule, batch_targets
from bioseg.errors import BiosegError
from bioseg.nn.bundle import build_network

log = logging.getLogger("bioseg")


def require_opacus() -> None:
    if importlib.util.find_spec("opacus") is None:
        raise BiosegError("train.privacy needs opacus: install the private extra, pip install 'bioseg[private]'")


def private_experiment(cfg: Experiment) -> Experiment:
    """``cfg`` made trainable by Opacus: GroupNorm instead of BatchNorm (said in one line), float32,
    one device, no patch set (its patches are not tied to images). Refuses layers Opacus cannot train."""
    require_opacus()
    if cfg.data.patch_set is not None:
        raise BiosegError("train.privacy samples whole training images; a patch set (data.patch_set) cannot be "
                          "sampled so: remove data.patch_set")  # fmt: skip
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in build_network(cfg).modules()):
        log.info(f"train.privacy: model.norm {cfg.model.norm or 'batch'} → group (BatchNorm mixes the images of a "
                 "batch, which per-image clipping cannot bound)")  # fmt: skip
        cfg.model.norm = "group"
    cfg.train.precision = "32"
    if cfg.train.devices == "auto":
        cfg.train.devices = 1
    check_private_network(build_network(cfg))
    return cfg


def check_private_network(net: torch.nn.Module) -> None:
    """One BiosegError naming every layer of ``net`` that Opacus cannot train privately."""
    from opacus.validators import ModuleValidator

    problems = []
    for name, module in net.named_modules():
        validator = ModuleValidator.VALIDATORS.get(type(module))
        if validator is not None and any(p.requires_grad for p in module.parameters(recurse=False)):
            problems += [f"{name} ({type(module).__name__}: {err})" for err in validator(module)]
    if problems:
        raise BiosegError(f"train.privacy: Opacus cannot train {len(problems)} layer(s): {'; '.join(problems)}; "
                          "choose a model.norm of group, instance or none")  # fmt: skip


def epsilon_after(steps: int, noise_multiplier: float, sample_rate: float, delta: float) -> float:
    """Epsilon spent by ``steps`` steps of the sampled Gaussian mechanism (Rényi DP, Opacus's analysis)."""
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

    if steps <= 0:
        return 0.0
    alphas = RDPAccountant.DEFAULT_ALPHAS
    rdp = compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=steps, orders=alphas)
    return float(get_privacy_spent(orders=alphas, rdp=rdp, delta=delta)[0])


class PrivateDataModule(SegmentationDataModule):
    """Training batches by Poisson sampling of the training images (Opacus's ``DPDataLoader``)."""

    dp_loader: DataLoader | None = None

    def train_dataloader(self) -> DataLoader:
        from opacus.data_loader import DPDataLoader

        d = self.cfg.data
        self._train_set = PatchDataset(self.train_samples, d.patch_size, 0, d.foreground_fraction, seed=self.cfg.seed,
                                       channels=self._random_channels(), per_image=True)  # fmt: skip
        if self.trainer is not None:
            self._train_set.set_epoch(self.trainer.current_epoch)
        size = min(d.batch_size, len(self._train_set))
        batches = DataLoader(self._train_set, batch_size=size, num_workers=d.num_workers)
        generator = torch.Generator().manual_seed(self.cfg.seed)
        self.dp_loader = DPDataLoader.from_data_loader(batches, generator=generator)
        return self.dp_loader


class PrivateSegmentationModule(SegmentationModule):
    """The segmentation module trained with DP-SGD: Opacus's per-sample hooks on ``net`` (left
    unwrapped, so checkpoints and the saved model are those of any run) and its ``DPOptimizer``."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.privacy = self.cfg.train.privacy
        self.noise_multiplier: float | None = self.privacy.noise_multiplier
        self.sample_rate = math.nan
        self.planned_steps = 0
        self._empty_batch = False
        self.engine: Any = None
        self._hooks: list[Any] = []  # a list: an nn.Module attribute would enter the state dict
        # per-image gradients come out contiguous: channels-last parameters would make every step copy them
        self.memory_format = torch.contiguous_format
        self.net.to(memory_format=self.memory_format)
        for m in self.net.modules():  # Opacus's backward hooks forbid in-place activations; same weights
            if getattr(m, "inplace", False):
                m.inplace = False

    def configure_optimizers(self) -> dict[str, Any]:
        from opacus import PrivacyEngine
        from opacus.accountants.utils import get_noise_multiplier

        total = max(1, int(self.trainer.estimated_stepping_batches))  # also sets up the data loader
        self.planned_steps = total
        loader = self.trainer.datamodule.dp_loader
        self.sample_rate = 1 / len(loader)
        p = self.privacy
        if self.noise_multiplier is None:  # the noise that spends target_epsilon in the planned steps
            self.noise_multiplier = get_noise_multiplier(
                target_epsilon=p.target_epsilon, target_delta=p.delta, sample_rate=self.sample_rate, steps=total
            )
            log.info(f"train.privacy: noise multiplier {self.noise_multiplier:.3f} spends epsilon "
                     f"{p.target_epsilon:g} in {total} steps (sample rate {self.sample_rate:.3g})")  # fmt: skip
        first = epsilon_after(1, self.noise_multiplier, self.sample_rate, p.delta)
        if p.target_epsilon is not None and first > p.target_epsilon:
            raise BiosegError(
                f"train.privacy: one step already spends epsilon {first:.3g}, above target_epsilon "
                f"{p.target_epsilon:g}; raise noise_multiplier or leave it out to have it computed"
            )
        self.engine = PrivacyEngine(accountant="rdp")
        hooks, optimizer, _ = self.engine.make_private(
            module=self.net, optimizer=self.build_optimizer(), data_loader=loader,
            noise_multiplier=self.noise_multiplier, max_grad_norm=p.max_grad_norm,
            poisson_sampling=False,  # the loader already samples so (PrivateDataModule)
            wrap_model=False, noise_generator=torch.Generator().manual_seed(self.cfg.seed),
        )  # fmt: skip
        self._hooks = [hooks]
        return self.schedule(optimizer)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        n = batch["image"].shape[0]
        if n == 0:  # an empty Poisson batch: no backward (convolutions refuse 0 images), but the noisy step
            self._empty_batch = True  # is taken, on zero per-image gradients, as the accounting assumes
            return None
        outputs = self.net(batch["image"])
        targets, weights = batch_targets(batch, self.cfg.heads)
        losses, sums = [], {}
        for i in range(n):  # image by image: each image's gradient depends on that image only
            one = slice(i, i + 1)
            total, parts = self.loss({k: v[one] for k, v in outputs.items()}, {k: v[one] for k, v in targets.items()},
                                     {k: v[one] for k, v in weights.items()} if weights else None)  # fmt: skip
            losses.append(total)
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value
        total = torch.stack(losses).mean()
        if not torch.isfinite(total):
            self._stop_on_nan(total)
        self.log("train/loss", total, on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        for key, value in sums.items():
            self._term_sums[key] = self._term_sums.get(key, 0.0) + value.detach()
        self._term_sums["_n"] = self._term_sums.get("_n", 0) + n
        return total

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # after Lightning's zero_grad, which clears them, and before Opacus's clipping reads them
        if self._empty_batch:
            for p in self.net.parameters():
                if p.requires_grad:
                    p.grad_sample = p.new_zeros((0, *p.shape))
            self._empty_batch = False

    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> dict[str, torch.Tensor]:
        if batch["image"].shape[0] == 0:  # nothing to augment
            return batch
        return super().on_after_batch_transfer(batch, dataloader_idx)

    @property
    def steps(self) -> int:
        return int(self.global_step)

    def spent(self) -> float:
        """Epsilon spent so far, by Opacus's own accountant (which counts the optimiser's steps)."""
        if self.engine is None or not self.engine.accountant.history:
            return 0.0
        return float(self.engine.accountant.get_epsilon(self.privacy.delta))

    def teardown(self, stage: str) -> None:
        for hooks in self._hooks:
            hooks.cleanup()
        self._hooks = []


class PrivacyBudget(L.Callback):
    """Logs the spent epsilon (``privacy/epsilon``, the epoch's last value), stops before a step would
    pass ``target_epsilon`` and writes ``privacy.json`` (what was spent, and how) in the run folder."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.stopped_at_target = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        eps = pl_module.spent()
        pl_module.log("privacy/epsilon", eps, on_step=False, on_epoch=True, reduce_fx="max")
        p = pl_module.privacy
        if p.target_epsilon is None or self.stopped_at_target or pl_module.steps >= pl_module.planned_steps:
            return
        following = epsilon_after(pl_module.steps + 1, pl_module.noise_multiplier, pl_module.sample_rate, p.delta)
        if following > p.target_epsilon:
            self.stopped_at_target = True
            trainer.should_stop = True
            log.info(f"train.privacy: stopped at step {pl_module.steps} (epoch {trainer.current_epoch + 1}): epsilon "
                     f"{eps:.3f} spent, one more step would pass target_epsilon {p.target_epsilon:g} "
                     f"(delta {p.delta:g})")  # fmt: skip

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        p = pl_module.privacy
        report = {
            "epsilon": pl_module.spent(), "delta": p.delta, "target_epsilon": p.target_epsilon,
            "stopped_at_target": self.stopped_at_target, "noise_multiplier": pl_module.noise_multiplier,
            "max_grad_norm": p.max_grad_norm, "sample_rate": pl_module.sample_rate, "steps": pl_module.steps,
            "accountant": "rdp", "unit": "one training image",
        }  # fmt: skip
        (self.run_dir / "privacy.json").write_text(json.dumps(report, indent=2))


def privacy_summary(run_dir: Path) -> str | None:
    """One line saying what a private run spent, from its ``privacy.json``; None for other runs."""
    path = Path(run_dir) / "privacy.json"
    if not path.is_file():
        return None
    r = json.loads(path.read_text())
    stop = f", stopped at target_epsilon {r['target_epsilon']:g}" if r["stopped_at_target"] else ""
    return (f"privacy: epsilon {r['epsilon']:.3f} at delta {r['delta']:g} after {r['steps']} steps (noise multiplier "
            f"{r['noise_multiplier']:.3f}, max grad norm {r['max_grad_norm']:g}, sample rate {r['sample_rate']:.3g}"
            f"{stop})")  # fmt: skip
