"""Input checks and conversions shared by the loss functions in :mod:`bioseg.losses.functional`.

Shapes and head types are checked on every call; value ranges (target in [0, 1], class indices in
``[0, C)``, non-negative weights) only on CPU tensors, where reading a value costs no device sync.
Everything comes back in the dtype losses are computed in (float32, or float64 when given).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bioseg.errors import BiosegError


def _check_logits(logits: Tensor, multiclass: bool) -> None:
    if logits.ndim not in (4, 5):
        raise BiosegError(
            f"logits have shape {tuple(logits.shape)}; expected (N, C, H, W) for 2D or (N, C, D, H, W) for 3D"
        )
    channels = logits.shape[1]
    if not multiclass and channels != 1:
        raise BiosegError(
            f"a binary head needs logits with 1 channel, got {channels} (shape {tuple(logits.shape)}); "
            "for several classes use a multiclass head"
        )
    if multiclass and channels < 2:
        raise BiosegError(
            f"a multiclass head needs logits with at least 2 channels, got {channels}; "
            "for a single foreground channel use a binary head"
        )


def _with_channel(t: Tensor, logits: Tensor, what: str) -> Tensor:
    """``t`` as ``(N, 1, *spatial)`` matching ``logits (N, C, *spatial)``; accepts ``(N, *spatial)`` too."""
    expected = (logits.shape[0], 1, *logits.shape[2:])
    if t.ndim == logits.ndim - 1:
        t = t.unsqueeze(1)
    if tuple(t.shape) != expected:
        raise BiosegError(
            f"{what} has shape {tuple(t.shape)} but logits have shape {tuple(logits.shape)}; "
            f"expected {what} of shape {expected} (or without the channel axis)"
        )
    return t


def _float(logits: Tensor) -> Tensor:
    """Logits in the dtype losses are computed in: float64 stays, anything else (bf16, fp16) → float32."""
    return logits if logits.dtype == torch.float64 else logits.float()


def _prepare_weight(weight: Tensor | None, logits: Tensor) -> Tensor | None:
    if weight is None:
        return None
    weight = _with_channel(weight, logits, "weight").to(dtype=_float(logits).dtype)
    # Value checks need a device sync; done on CPU tensors, where they are free.
    if weight.device.type == "cpu" and weight.numel() and bool((weight < 0).any()):
        raise BiosegError(
            f"weight map has negative values (min {float(weight.min()):.3g}); pixel weights must be >= 0 "
            "(0 ignores a pixel)"
        )
    return weight


def _prepare_binary(
    logits: Tensor, target: Tensor, weight: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``logits, target, weight`` in the computation dtype, all ``(N, 1, *spatial)``."""
    _check_logits(logits, multiclass=False)
    target = _with_channel(target, logits, "target")
    target = target.to(_float(logits).dtype)
    if target.device.type == "cpu" and target.numel():
        lo, hi = (float(v) for v in torch.aminmax(target))  # one pass over the target
        if lo < 0 or hi > 1:
            raise BiosegError(
                f"binary target has values in [{lo:.3g}, {hi:.3g}]; expected values in [0, 1] "
                "(map mask values to 0/1, e.g. data.mask_values: {255: 1})"
            )
    return _float(logits), target, _prepare_weight(weight, logits)


def _prepare_multiclass(
    logits: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Float ``logits (N, C, *spatial)``, int64 ``target (N, *spatial)`` with every ignored pixel set
    to class 0, and ``weight (N, 1, *spatial)`` that is zero on ignored pixels (None: nothing weighted)."""
    _check_logits(logits, multiclass=True)
    if target.is_floating_point():
        raise BiosegError(
            f"a multiclass target must hold integer class indices, got dtype {target.dtype}; "
            "convert it with target.long()"
        )
    target = _with_channel(target, logits, "target").squeeze(1).long()
    weight = _prepare_weight(weight, logits)
    num_classes = logits.shape[1]
    valid = None
    if ignore_index is not None:
        valid = target != ignore_index
        target = torch.where(valid, target, torch.zeros_like(target))
    if target.device.type == "cpu" and target.numel():
        lo, hi = int(target.min()), int(target.max())
        if lo < 0 or hi >= num_classes:
            hint = "" if ignore_index is not None else "; to skip a label value, set ignore_index"
            raise BiosegError(
                f"multiclass target has class indices in [{lo}, {hi}] but the head has {num_classes} classes "
                f"(valid: 0..{num_classes - 1}){hint}"
            )
    if valid is not None:
        mask = valid.unsqueeze(1).to(_float(logits).dtype)
        weight = mask if weight is None else weight * mask
    return _float(logits), target, weight
