"""Registered loss terms: thin ``nn.Module`` wrappers over :mod:`bioseg.losses.functional`.

Each term is built as ``LOSSES.get(name)(head_type, **kwargs)`` where the keyword arguments are those of
one ``loss:`` entry of the config (``- {name: bce, weight: 0.5, pos_weight: 3}``); its forward is
``(logits, target, weight=None) -> scalar``. The options are declared, with their checks, in
:mod:`bioseg.config.loss_options`: the config checks them when it is loaded, the terms again when built.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bioseg.config.loss_options import HEAD_TYPES, LOSS_OPTIONS, LossOptions, check_loss_options
from bioseg.losses import functional as LF
from bioseg.registry import Registry

__all__ = [
    "HEAD_TYPES",
    "LOSSES",
    "BCETerm",
    "CETerm",
    "DiceTerm",
    "FocalTerm",
    "IoUTerm",
    "LossModule",
    "TverskyTerm",
    "build_term",
]


# --- base class --------------------------------------------------------------------------------------


class LossModule(nn.Module, abc.ABC):
    """One loss term for one head type.

    Its options, their defaults, the head types it fits and the value checks are declared in
    :data:`bioseg.config.loss_options.LOSS_OPTIONS` under the term's ``name`` (``spec``), where the config
    checks them too; subclasses only turn the checked options into buffers (``_setup``) and compute.
    """

    name: ClassVar[str]
    spec: ClassVar[LossOptions]

    def __init__(self, head_type: str, **kwargs: Any) -> None:
        super().__init__()
        self.options = check_loss_options(self.name, head_type, kwargs)
        self.head_type = head_type
        self.multiclass = head_type == "multiclass"
        self._setup()

    def _setup(self) -> None:
        """Buffers made from ``self.options``, if the term needs any."""

    def _class_buffer(self, name: str, values: list[float] | None) -> None:
        # A buffer follows .to(device); not persistent, so checkpoints do not depend on loss options.
        tensor = None if values is None else torch.tensor(values, dtype=torch.float32)
        self.register_buffer(name, tensor, persistent=False)

    @abc.abstractmethod
    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """``logits (N, C, *spatial)``, ``target`` and optional ``weight (N, 1, *spatial)`` → scalar."""

    def extra_repr(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"head_type={self.head_type!r}" + (f", {opts}" if opts else "")


LOSSES: Registry[type[LossModule]] = Registry("loss")


def _registered(*names: str) -> Callable[[type[LossModule]], type[LossModule]]:
    """Register the term under ``names``; its options are those declared for its ``name``."""

    def decorator(cls: type[LossModule]) -> type[LossModule]:
        if cls.name not in LOSS_OPTIONS or any(n not in LOSS_OPTIONS for n in names):
            raise ValueError(f"declare loss '{cls.name}' ({', '.join(names)}) in bioseg.config.loss_options first")
        cls.spec = LOSS_OPTIONS[cls.name]
        for n in names:
            LOSSES.register(n)(cls)
        return cls

    return decorator


# --- the terms ---------------------------------------------------------------------------------------


@_registered("bce")
class BCETerm(LossModule):
    """Binary cross-entropy (binary heads). ``pos_weight`` > 1 weighs foreground pixels up;
    ``class_weights: [w_background, w_foreground]`` weighs each pixel by its true class."""

    name = "bce"

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        cw = self.options["class_weights"]
        if cw is not None:  # per-pixel weight of the pixel's true class, times any weight map
            by_class = cw[0] + (cw[1] - cw[0]) * target.float()
            weight = by_class if weight is None else weight * by_class
        return LF.bce_loss(logits, target, weight, pos_weight=self.options["pos_weight"])


@_registered("ce")
class CETerm(LossModule):
    """Softmax cross-entropy (multiclass heads)."""

    name = "ce"

    def _setup(self) -> None:
        self._class_buffer("class_weights", self.options["class_weights"])

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        return LF.ce_loss(
            logits,
            target,
            weight,
            class_weights=self.class_weights,
            ignore_index=self.options["ignore_index"],
            label_smoothing=self.options["label_smoothing"],
        )


@_registered("focal")
class FocalTerm(LossModule):
    """Focal loss (both head types). ``alpha``: foreground weight (binary), or a scalar or one value per
    class (multiclass); ``gamma``: focusing exponent (0 gives plain cross-entropy)."""

    name = "focal"

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        o = self.options
        return LF.focal_loss(
            logits,
            target,
            multiclass=self.multiclass,
            weight=weight,
            alpha=o["alpha"],
            gamma=o["gamma"],
            ignore_index=o["ignore_index"],
        )


class _RegionTerm(LossModule):
    """Shared options of the region terms (dice, iou, tversky)."""

    def _setup(self) -> None:
        self._class_buffer("class_weights", self.options["class_weights"])

    def _region_kwargs(self) -> dict[str, Any]:
        o = self.options
        return {
            "multiclass": self.multiclass,
            "smooth": o["smooth"],
            "include_background": o["include_background"],
            "class_weights": self.class_weights,
            "ignore_index": o["ignore_index"],
        }


@_registered("dice")
class DiceTerm(_RegionTerm):
    """Soft Dice loss over the whole batch, mean over classes (binary: foreground only)."""

    name = "dice"

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        return LF.soft_dice_loss(logits, target, weight=weight, **self._region_kwargs())


@_registered("iou", "jaccard")
class IoUTerm(_RegionTerm):
    """Soft Jaccard (IoU) loss over the whole batch, mean over classes; also registered as 'jaccard'."""

    name = "iou"

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        return LF.iou_loss(logits, target, weight=weight, **self._region_kwargs())


@_registered("tversky")
class TverskyTerm(_RegionTerm):
    """Tversky loss: ``alpha`` weighs false positives, ``beta`` false negatives (0.5/0.5 is Dice)."""

    name = "tversky"

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        return LF.tversky_loss(
            logits,
            target,
            weight=weight,
            alpha=self.options["alpha"],
            beta=self.options["beta"],
            **self._region_kwargs(),
        )


def build_term(name: str, head_type: str, **kwargs: Any) -> LossModule:
    """The registered term ``name`` for a ``head_type`` head; unknown names or options raise BiosegError."""
    return LOSSES.get(name)(head_type, **kwargs)
