"""Registered loss terms: thin ``nn.Module`` wrappers over :mod:`bioseg.losses.functional`.

Each term is built as ``LOSSES.get(name)(head_type, **kwargs)`` where the keyword arguments are those of
one ``loss:`` entry of the config (``- {name: bce, weight: 0.5, pos_weight: 3}``); its forward is
``(logits, target, weight=None) -> scalar``. Arguments are checked when the term is built, so a typo
fails before training starts.
"""

from __future__ import annotations

import abc
import numbers
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bioseg.errors import BiosegError
from bioseg.losses import functional as LF
from bioseg.registry import Registry, did_you_mean

HEAD_TYPES = ("binary", "multiclass")

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


# --- value checks for keyword arguments (they come from YAML, so types are checked too) -------------


def _number(
    name: str, value: Any, *, low: float | None = None, high: float | None = None, strict: bool = False
) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"'{name}' must be a number, got {value!r}")
    v = float(value)
    if low is not None and (v < low or (strict and v == low)):
        raise ValueError(f"'{name}' must be {'>' if strict else '>='} {low:g}, got {value!r}")
    if high is not None and v > high:
        raise ValueError(f"'{name}' must be <= {high:g}, got {value!r}")
    return v


def _class_list(name: str, value: Any, *, high: float | None = None) -> list[float]:
    if isinstance(value, Tensor):
        value = value.tolist()
    if not isinstance(value, list | tuple) or not value:
        raise TypeError(f"'{name}' must be a list with one number per class, got {value!r}")
    values = [_number(f"{name}[{i}]", v, low=0.0, high=high) for i, v in enumerate(value)]
    if sum(values) <= 0:
        raise ValueError(f"'{name}' must have at least one positive value, got {value!r}")
    return values


def _optional_int(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"'{name}' must be an integer label value, got {value!r}")
    return int(value)


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"'{name}' must be true or false, got {value!r}")
    return value


# --- base class --------------------------------------------------------------------------------------


class LossModule(nn.Module, abc.ABC):
    """One loss term for one head type.

    Subclasses declare ``params`` (keyword → default), which keywords apply to one head type only,
    the head types they fit (with the term to use instead) and ``_check`` to validate values.
    """

    name: ClassVar[str]
    params: ClassVar[dict[str, Any]] = {}
    multiclass_only: ClassVar[frozenset[str]] = frozenset()
    binary_only: ClassVar[frozenset[str]] = frozenset()
    use_instead: ClassVar[dict[str, str]] = {}  # head type this term does not fit → term to use

    def __init__(self, head_type: str, **kwargs: Any) -> None:
        super().__init__()
        if head_type not in HEAD_TYPES:
            raise BiosegError(
                f"loss '{self.name}': unknown head type '{head_type}'; "
                f"expected one of {', '.join(HEAD_TYPES)}." + did_you_mean(str(head_type), HEAD_TYPES)
            )
        if head_type in self.use_instead:
            raise BiosegError(
                f"loss '{self.name}' does not fit a {head_type} head; use '{self.use_instead[head_type]}' instead"
            )
        unknown = [k for k in kwargs if k not in self.params]
        if unknown:
            valid = sorted(self.params)
            key = unknown[0]
            raise BiosegError(
                f"loss '{self.name}' has no option '{key}'; valid options: {', '.join(valid) or '(none)'}."
                + did_you_mean(key, valid)
            )
        wrong_head = self.multiclass_only if head_type == "binary" else self.binary_only
        misplaced = sorted(set(kwargs) & wrong_head)
        if misplaced:
            other = "multiclass" if head_type == "binary" else "binary"
            raise BiosegError(
                f"loss '{self.name}': option '{misplaced[0]}' applies to {other} heads only; this head is "
                f"{head_type}: remove it"
            )
        self.head_type = head_type
        self.multiclass = head_type == "multiclass"
        options = {**self.params, **kwargs}
        try:
            self.options = self._check(options)
        except (TypeError, ValueError) as err:
            raise BiosegError(f"loss '{self.name}': {err}") from None

    def _check(self, options: dict[str, Any]) -> dict[str, Any]:
        """Validated (and normalised) options; raise TypeError/ValueError with the key in the message."""
        return options

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
    def decorator(cls: type[LossModule]) -> type[LossModule]:
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
    params = {"pos_weight": None, "class_weights": None}
    use_instead = {"multiclass": "ce"}

    def _check(self, options: dict[str, Any]) -> dict[str, Any]:
        if options["pos_weight"] is not None:
            options["pos_weight"] = _number("pos_weight", options["pos_weight"], low=0.0, strict=True)
        cw = options["class_weights"]
        options["class_weights"] = None if cw is None else _class_list("class_weights", cw)
        if options["class_weights"] is not None and len(options["class_weights"]) != 2:
            raise BiosegError(
                f"bce class_weights has {len(options['class_weights'])} values; a binary head takes two: "
                "[background, foreground]"
            )
        return options

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
    params = {"class_weights": None, "ignore_index": None, "label_smoothing": 0.0}
    use_instead = {"binary": "bce"}

    def _check(self, options: dict[str, Any]) -> dict[str, Any]:
        cw = options["class_weights"]
        options["class_weights"] = None if cw is None else _class_list("class_weights", cw)
        options["ignore_index"] = _optional_int("ignore_index", options["ignore_index"])
        options["label_smoothing"] = _number("label_smoothing", options["label_smoothing"], low=0.0, high=1.0)
        self._class_buffer("class_weights", options["class_weights"])
        return options

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
    params = {"alpha": None, "gamma": 2.0, "ignore_index": None}
    multiclass_only = frozenset({"ignore_index"})

    def _check(self, options: dict[str, Any]) -> dict[str, Any]:
        alpha = options["alpha"]
        if isinstance(alpha, list | tuple | Tensor):
            if not self.multiclass:
                raise ValueError(f"'alpha' for a binary head is one number in [0, 1], got {alpha!r}")
            options["alpha"] = _class_list("alpha", alpha)
        elif alpha is not None:
            options["alpha"] = _number("alpha", alpha, low=0.0, high=1.0)
        options["gamma"] = _number("gamma", options["gamma"], low=0.0)
        options["ignore_index"] = _optional_int("ignore_index", options["ignore_index"])
        return options

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

    params = {"smooth": 1e-5, "include_background": True, "class_weights": None, "ignore_index": None}
    multiclass_only = frozenset({"include_background", "class_weights", "ignore_index"})

    def _check(self, options: dict[str, Any]) -> dict[str, Any]:
        # smooth > 0 keeps a class absent from both prediction and target (or an all-zero weight map) finite.
        options["smooth"] = _number("smooth", options["smooth"], low=0.0, strict=True)
        options["include_background"] = _bool("include_background", options["include_background"])
        cw = options["class_weights"]
        options["class_weights"] = None if cw is None else _class_list("class_weights", cw)
        if options["class_weights"] is not None and not options["include_background"]:
            if sum(options["class_weights"][1:]) <= 0:
                raise ValueError("'class_weights' without the background must have a positive value")
        options["ignore_index"] = _optional_int("ignore_index", options["ignore_index"])
        self._class_buffer("class_weights", options["class_weights"])
        return options

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
    params = {**_RegionTerm.params, "alpha": 0.5, "beta": 0.5}

    def _check(self, options: dict[str, Any]) -> dict[str, Any]:
        options = super()._check(options)
        options["alpha"] = _number("alpha", options["alpha"], low=0.0)
        options["beta"] = _number("beta", options["beta"], low=0.0)
        if options["alpha"] + options["beta"] <= 0:
            raise ValueError("'alpha' + 'beta' must be > 0")
        return options

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
