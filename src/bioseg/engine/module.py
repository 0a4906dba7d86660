"""The LightningModule: model, composite loss, on-device augmentation, whole-image validation."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from bioseg.config import Experiment, HeadConfig
from bioseg.data.augment import build_augmentation
from bioseg.errors import BiosegError
from bioseg.inference.heads import activate, to_labels
from bioseg.inference.tiling import sliding_window
from bioseg.losses import build_loss
from bioseg.metrics import confusion_matrix, scores_from_confusion
from bioseg.nn import create_model


def build_network(cfg: Experiment) -> torch.nn.Module:
    m = cfg.model
    return create_model(
        m.name,
        spatial_dims=m.spatial_dims,
        in_channels=cfg.data.in_channels,
        heads={name: head.out_channels for name, head in cfg.heads.items()},
        **m.model_dump(exclude={"name", "spatial_dims"}),
    )


def head_target(mask: torch.Tensor, head: HeadConfig) -> torch.Tensor:
    """The class mask ``(N, 1, *spatial)`` in the form the head's loss expects."""
    return mask.float() if head.type == "binary" else mask.long()


class SegmentationModule(L.LightningModule):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config})  # the checkpoint carries its own experiment
        self.cfg = Experiment.model_validate(config)
        self.net = build_network(self.cfg)
        self.loss = build_loss(self.cfg.heads)
        self.augment = (
            build_augmentation(self.cfg.augment, self.cfg.model.spatial_dims) if self.cfg.augment else None
        )
        self.generator = torch.Generator().manual_seed(self.cfg.seed)
        self._confusion: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net(x)

    def on_after_batch_transfer(
        self, batch: dict[str, torch.Tensor], dataloader_idx: int
    ) -> dict[str, torch.Tensor]:
        if self.trainer is not None and self.trainer.training and self.augment is not None:
            image, targets = self.augment(batch["image"], {"mask": batch["mask"]}, generator=self.generator)
            batch = {**batch, "image": image, **targets}
        return batch

    def on_train_epoch_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "set_epoch"):
            datamodule.set_epoch(self.current_epoch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        outputs = self.net(batch["image"])
        targets = {name: head_target(batch["mask"], head) for name, head in self.cfg.heads.items()}
        total, parts = self.loss(outputs, targets)
        if not torch.isfinite(total):
            self._stop_on_nan(total)
        n = batch["image"].shape[0]
        self.log("train/loss", total, on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        for key, value in parts.items():  # "loss/" first, so that charts put the terms with the losses
            self.log(f"train/loss/{key}", value, on_step=False, on_epoch=True, batch_size=n)
        return total

    def _stop_on_nan(self, loss: torch.Tensor) -> None:
        ckpt = self.trainer.checkpoint_callback
        last = getattr(ckpt, "last_model_path", "") if ckpt is not None else ""
        where = f"last good checkpoint: {last}" if last else "no checkpoint was saved before it"
        raise BiosegError(
            f"the training loss became {loss.item()} at step {self.global_step} "
            f"(epoch {self.current_epoch}); "
            f"{where}. Lower optim.lr or set train.gradient_clip, then resume with --resume"
        )

    # --- validation on whole images, with the same sliding window as prediction -----------------

    def predict_logits(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits ``(K, *spatial)`` per head for one image ``(C, *spatial)``."""
        infer = self.cfg.infer
        return sliding_window(
            self.net,
            image,
            infer.patch_size,
            overlap=infer.overlap,
            blending=infer.blending,
            batch_size=infer.batch_size,
            size_divisor=self.net.size_divisor,
        )

    def on_validation_epoch_start(self) -> None:
        self._confusion = {}

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        for i in range(batch["image"].shape[0]):
            logits = self.predict_logits(batch["image"][i])
            mask = batch["mask"][i : i + 1]
            outputs = {name: value[None] for name, value in logits.items()}
            targets = {name: head_target(mask, head) for name, head in self.cfg.heads.items()}
            total, _ = self.loss(outputs, targets)
            self.log("val/loss", total, on_epoch=True, batch_size=1)
            for name, head in self.cfg.heads.items():
                labels = to_labels(activate(logits[name], head.type), head.type, self.cfg.infer.threshold)
                cm = confusion_matrix(labels, mask[0, 0], head.classes).to(self.device)
                self._confusion[name] = self._confusion.get(name, 0) + cm

    def on_validation_epoch_end(self) -> None:
        means: dict[str, list[float]] = {"dice_mean": [], "iou_mean": [], "accuracy": []}
        for name, cm in self._confusion.items():
            cm = self.trainer.strategy.reduce(cm.float(), reduce_op="sum")
            classes = self._class_names(name)
            scores = scores_from_confusion(cm.long().cpu(), classes)
            for key, value in scores.items():
                if "/" in key or len(self._confusion) > 1:  # per class always; per-head means when several
                    self.log(f"val/{name}/{key}", value)
            for key in means:
                means[key].append(scores[key])
        for key, values in means.items():
            if values:
                self.log(f"val/{key}", sum(values) / len(values), prog_bar=key == "dice_mean")

    def _class_names(self, head: str) -> list[str]:
        n = self.cfg.heads[head].classes
        names = self.cfg.data.classes
        return names if len(names) == n else [f"class_{i}" for i in range(n)]

    # --- optimisation ----------------------------------------------------------------------------

    def configure_optimizers(self) -> dict[str, Any]:
        o, s = self.cfg.optim, self.cfg.sched
        params = [p for p in self.parameters() if p.requires_grad]
        if o.name == "sgd":
            opt = torch.optim.SGD(
                params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=True
            )
        elif o.name == "adam":
            opt = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
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
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, warmup_then(warmup, total, s.name == "cosine", floor)
            )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def warmup_then(warmup: int, total: int, cosine: bool, floor: float):
    """LR factor per step: linear warm-up over ``warmup`` steps, then cosine decay to ``floor``
    (or constant)."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if not cosine:
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor
