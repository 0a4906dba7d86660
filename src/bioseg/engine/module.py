"""The LightningModule: model, composite loss, on-device augmentation, whole-image validation."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from bioseg.config import Experiment, HeadConfig
from bioseg.data.augment import build_augmentation
from bioseg.data.head_targets import background_class, class_names
from bioseg.errors import BiosegError
from bioseg.inference.heads import activate, to_labels
from bioseg.inference.tile_plan import tile_plan
from bioseg.inference.tiling import sliding_window
from bioseg.losses import build_loss
from bioseg.metrics import confusion_matrix, scores_from_confusion
from bioseg.nn.bundle import build_network


def loss_target(target: torch.Tensor, head: HeadConfig) -> torch.Tensor:
    """A head's class indices ``(N, 1, *spatial)`` in the form its loss expects."""
    return target.float() if head.type == "binary" else target.long()


def batch_targets(batch: dict[str, torch.Tensor], heads: dict[str, HeadConfig]):
    """``({head: target}, {head: weight map})`` from a batch; heads without a weight map have none."""
    targets = {name: loss_target(batch[f"target/{name}"], head) for name, head in heads.items()}
    weights = {name: batch[f"weight/{name}"].float() for name in heads if f"weight/{name}" in batch}
    return targets, weights or None


class SegmentationModule(L.LightningModule):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config})  # the checkpoint carries its own experiment
        self.cfg = Experiment.model_validate(config)
        self.net = build_network(self.cfg)
        self.loss = build_loss(self.cfg.heads)
        self.augment = build_augmentation(self.cfg.augment, self.cfg.model.spatial_dims) if self.cfg.augment else None
        self.generator = torch.Generator().manual_seed(self.cfg.seed)
        # channels-last is what oneDNN and cuDNN convolve fastest (measured 1.3–1.4× per training step)
        self.memory_format = torch.channels_last if self.cfg.model.spatial_dims == 2 else torch.channels_last_3d
        self.net.to(memory_format=self.memory_format)
        self._term_sums: dict[str, torch.Tensor] = {}
        self._confusion: dict[str, torch.Tensor] = {}
        self._cldice: dict[str, list[float]] = {}
        self._val_loss: list[float] = []
        self.frozen_heads: set[str] = set()  # see engine/head_freezing.py

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net(x)

    @property
    def _processes(self) -> int:
        """How many processes train together (Lightning's DDP); 1 without a trainer."""
        return self._trainer.world_size if self._trainer is not None else 1

    def setup(self, stage: str) -> None:
        if self._processes > 1:  # each process its own augmentation draws; process 0 those of a lone run
            self.generator.manual_seed(self.cfg.seed + 1_000_003 * self.global_rank)

    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> dict[str, torch.Tensor]:
        if self.trainer is not None and self.trainer.training and self.augment is not None:
            moving = {k: v for k, v in batch.items() if k.startswith(("target/", "weight/"))}
            image, moved = self.augment(batch["image"], moving, generator=self.generator)
            batch = {**batch, "image": image, **moved}
        if batch["image"].dim() == self.cfg.model.spatial_dims + 2:
            batch = {**batch, "image": batch["image"].contiguous(memory_format=self.memory_format)}
        return batch

    def on_train_epoch_start(self) -> None:
        frozen_encoder = self.current_epoch < self.cfg.train.freeze_encoder_epochs
        if hasattr(self.net, "freeze_encoder"):
            self.net.freeze_encoder(frozen_encoder)
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "set_epoch"):
            datamodule.set_epoch(self.current_epoch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        outputs = self.net(batch["image"])
        targets, weights = batch_targets(batch, self.cfg.heads)
        for head in self.frozen_heads:  # a frozen head takes no loss
            targets.pop(head, None)
        total, parts = self.loss(outputs, targets, weights)
        if not torch.isfinite(total):
            self._stop_on_nan(total)
        n = batch["image"].shape[0]
        distributed = self._processes > 1
        self.log("train/loss", total, on_step=True, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=distributed)
        for key, value in parts.items():  # summed here, logged once per epoch: self.log costs per call
            self._term_sums[key] = self._term_sums.get(key, 0.0) + value.detach() * n
        self._term_sums["_n"] = self._term_sums.get("_n", 0) + n
        return total

    def epoch_loss_terms(self) -> dict[str, float]:
        """This epoch's mean loss terms so far, ``{"train/loss/<term>": value}``. Callbacks read them here:
        Lightning runs their ``on_train_epoch_end`` before the module's, which logs (and resets) them."""
        keys = [k for k in self._term_sums if k != "_n"]
        if not keys:
            return {}
        sums = torch.stack([torch.as_tensor(self._term_sums[k], dtype=torch.float32, device=self.device) for k in keys])
        n = torch.tensor(float(self._term_sums["_n"]), device=self.device)
        if self._processes > 1:  # every process calls this (a collective): the terms over all their patches
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
            n = self.trainer.strategy.reduce(n, reduce_op="sum")
        return {f"train/loss/{k}": float(v) / max(float(n), 1.0) for k, v in zip(keys, sums, strict=True)}

    def on_train_epoch_end(self) -> None:
        n = self._term_sums.pop("_n", 0)
        for key, value in self._term_sums.items():  # "loss/" first, so charts put the terms with the losses
            self.log(f"train/loss/{key}", value / max(n, 1), sync_dist=self._processes > 1)
        self._term_sums = {}

    def _stop_on_nan(self, loss: torch.Tensor) -> None:
        last = Path(self.trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        where = f"last good checkpoint: {last}" if last.is_file() else "no checkpoint was saved before it"
        raise BiosegError(
            f"the training loss became {loss.item()} at step {self.global_step} "
            f"(epoch {self.current_epoch}); "
            f"{where}. Lower optim.lr or set train.gradient_clip, then resume with --resume"
        )

    # --- validation on whole images, with the same sliding window as prediction -----------------

    def predict_logits(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits ``(K, *spatial)`` per head for one image ``(C, *spatial)``."""
        infer = self.cfg.infer
        plan = tile_plan(self.cfg, infer, tuple(image.shape[1:]), self.net.size_divisor)
        return sliding_window(
            self.net,
            image,
            plan.patch,
            overlap=plan.overlap,
            blending=infer.blending,
            batch_size=plan.batch_size,
            size_divisor=self.net.size_divisor,
        )

    def on_validation_epoch_start(self) -> None:
        self._confusion, self._cldice, self._val_loss = {}, {}, []

    def _is_padding(self, batch_idx: int) -> bool:
        """Whether this validation image is one that DistributedSampler repeats so that every process gets
        as many: the first images again, after the last. Repeats are skipped, never scored twice."""
        world = self._processes
        if world == 1:
            return False
        # without shuffling, image i of process r is image r + i·world of the padded list
        return batch_idx * world + self.global_rank >= len(self.trainer.val_dataloaders.dataset)

    @property
    def _cldice_heads(self) -> set[str]:
        """Binary heads trained with a clDice term are also scored with the clDice metric."""
        return {n for n, h in self.cfg.heads.items() if h.type == "binary" and any(t.name == "cldice" for t in h.loss)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["frozen_heads"] = sorted(self.frozen_heads)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.frozen_heads = set(checkpoint.get("frozen_heads", []))

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        if self._is_padding(batch_idx):
            return
        for i in range(batch["image"].shape[0]):
            logits = self.predict_logits(batch["image"][i])
            outputs = {name: value[None] for name, value in logits.items()}
            targets, weights = batch_targets({k: v[i : i + 1] for k, v in batch.items()}, self.cfg.heads)
            total, _ = self.loss(outputs, targets, weights)
            self._val_loss.append(float(total))
            for name, head in self.cfg.heads.items():
                labels = to_labels(activate(logits[name], head.type), head.type, self.cfg.infer.threshold)
                truth = batch[f"target/{name}"][i, 0]
                weight = batch.get(f"weight/{name}")
                valid = weight[i, 0] > 0 if weight is not None else None  # 0: no mask for this head here
                if valid is not None and not bool(valid.any()):
                    continue
                cm = confusion_matrix(labels, truth, head.classes, valid=valid).to(self.device)
                if name in self._cldice_heads:
                    from bioseg.metrics.skeleton import cldice_score

                    self._cldice.setdefault(name, []).append(cldice_score(labels.cpu().numpy(), truth.cpu().numpy()))
                self._confusion[name] = self._confusion.get(name, 0) + cm

    def _summed(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the processes of a DDP run (each calls this alike); as they are alone."""
        if self._processes == 1:
            return values
        return self.trainer.strategy.reduce(values.to(self.device, torch.float64), reduce_op="sum").cpu()

    def on_validation_epoch_end(self) -> None:
        # every head and sum in the same order on every process: the reductions are collectives, and a
        # process whose images had no mask for a head still adds its zeros
        loss = self._summed(torch.tensor([sum(self._val_loss), len(self._val_loss)], dtype=torch.float64))
        if loss[1] > 0:
            self.log("val/loss", float(loss[0] / loss[1]))
        confusion = {}
        for name, head in self.cfg.heads.items():
            cm = self._confusion.get(name)
            cm = torch.zeros(head.classes, head.classes) if cm is None else cm
            cm = self._summed(cm.double().cpu())
            if cm.sum() > 0:
                confusion[name] = cm.round().long()
        means: dict[str, list[float]] = {"dice_mean": [], "iou_mean": [], "accuracy": []}
        for name, cm in confusion.items():
            scores = scores_from_confusion(cm, self._class_names(name), background_class(self.cfg, name))
            for key, value in scores.items():
                if "/" in key or len(confusion) > 1:  # per class always; per-head means when several
                    self.log(f"val/{name}/{key}", value)
            for key in means:
                means[key].append(scores[key])
        for key, values in means.items():
            if values:
                self.log(f"val/{key}", sum(values) / len(values), prog_bar=key == "dice_mean")
        for name in sorted(self._cldice_heads):
            values = self._cldice.get(name, [])
            cl = self._summed(torch.tensor([sum(values), len(values)], dtype=torch.float64))
            if cl[1] > 0:
                self.log(f"val/{name}/cldice", float(cl[0] / cl[1]))

    def _class_names(self, head: str) -> list[str]:
        return class_names(self.cfg, head)

    # --- optimisation ----------------------------------------------------------------------------

    def configure_optimizers(self) -> dict[str, Any]:
        return self.schedule(self.build_optimizer())

    def build_optimizer(self) -> torch.optim.Optimizer:
        o = self.cfg.optim
        params = list(self.parameters())  # frozen parts (heads, encoder) have no gradient: the optimiser skips them
        if o.name == "sgd":
            return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=True)
        if o.name == "adam":
            return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)

    def schedule(self, opt: torch.optim.Optimizer) -> dict[str, Any]:
        """``opt`` with the learning-rate schedule of ``sched``, as ``configure_optimizers`` returns them."""
        o, s = self.cfg.optim, self.cfg.sched
        total = max(1, int(self.trainer.estimated_stepping_batches))
        steps_per_epoch = max(1, total // max(1, self.cfg.train.epochs))
        if s.name == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode=self.cfg.train.monitor_mode, factor=s.factor, patience=s.patience, min_lr=s.min_lr
            )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": self.cfg.train.monitor}}
        if s.name == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=o.lr, total_steps=total)
        else:
            warmup = int(s.warmup_epochs * steps_per_epoch)
            floor = s.min_lr / o.lr
            budget = self.cfg.train.max_time_minutes
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, warmup_then(warmup, total, s.name == "cosine", floor, budget * 60 if budget else None)
            )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def warmup_then(warmup: int, total: int, cosine: bool, floor: float, budget_s: float | None = None):
    """LR factor per step: linear warm-up over ``warmup`` steps, then cosine decay to ``floor`` (or
    constant). With a wall-clock budget the decay follows whichever runs out first, steps or time, so a
    run stopped by ``train.max_time_minutes`` still ends at a low learning rate."""
    start: list[float] = []

    def factor(step: int) -> float:
        if not start:
            start.append(time.monotonic())
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if not cosine:
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if budget_s:
            progress = max(progress, (time.monotonic() - start[0]) / budget_s)
        progress = min(1.0, progress)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor
