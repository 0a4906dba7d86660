"""Segmentation losses as pure functions of logits, 2D and 3D alike.

Conventions shared by every function here:

- ``logits`` are raw network outputs; the sigmoid (binary) or softmax (multiclass) is applied exactly
  once, inside. Computation runs in float32 (float64 stays float64), so
  bf16 autocast outputs are summed in full precision.
- binary head: ``logits (N, 1, *spatial)``, ``target (N, 1, *spatial)`` float in [0, 1] (hard or soft).
- multiclass head: ``logits (N, C, *spatial)``, ``target (N, *spatial)`` or ``(N, 1, *spatial)`` integer
  class indices in ``[0, C)``; pixels equal to ``ignore_index`` (when given) are left out.
- ``weight (N, 1, *spatial)``: a non-negative pixel-weight map. Pixel-wise losses (bce, ce, focal)
  return the weighted mean ``sum(w * loss) / sum(w)``; region losses (dice, iou, tversky) weight every
  soft sum by ``w``. A weight of 0 leaves the pixel out entirely; an all-zero map gives a loss of 0
  with zero gradients.
- region losses (dice, iou, tversky) are computed per class over the whole batch (sums over N and all
  spatial axes, not per image), then averaged over classes (optionally weighted by ``class_weights``).
  Batch-level sums keep a patch without foreground from producing a meaningless per-image score.
  A binary head is scored on its foreground channel only.

Every function returns a scalar tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from bioseg.errors import BiosegError
from bioseg.losses.prepare import _prepare_binary, _prepare_multiclass

# Guards divisions by a sum of weights that may be exactly zero (all pixels ignored).
_EPS = 1e-12

__all__ = [
    "bce_loss",
    "ce_loss",
    "focal_loss",
    "iou_loss",
    "soft_dice_loss",
    "tversky_loss",
]


# --- reductions -------------------------------------------------------------------------------------


def _weighted_mean(loss: Tensor, weight: Tensor | None) -> Tensor:
    """``sum(w * loss) / sum(w)``; ``loss`` and ``weight`` broadcast to the same shape."""
    if weight is None:
        return loss.mean()
    weight = weight.expand_as(loss)
    return (weight * loss).sum() / weight.sum().clamp_min(_EPS)


def _as_class_vector(
    values: float | Sequence[float] | Tensor, num_classes: int, what: str, ref: Tensor
) -> Tensor:
    vec = torch.as_tensor(values, device=ref.device).to(ref.dtype).flatten()
    if vec.numel() != num_classes:
        raise BiosegError(
            f"{what} has {vec.numel()} values but the head has {num_classes} classes; "
            "give one value per class (background included)"
        )
    return vec


# --- pixel-wise losses ------------------------------------------------------------------------------


def bce_loss(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    pos_weight: float | Tensor | None = None,
) -> Tensor:
    """Binary cross-entropy on logits.

    Args:
        logits: ``(N, 1, *spatial)``.
        target: ``(N, 1, *spatial)`` in [0, 1].
        weight: optional ``(N, 1, *spatial)`` pixel weights; the result is their weighted mean.
        pos_weight: factor on the loss of foreground pixels (> 1 favours recall), as in PyTorch.
    """
    logits, target, weight = _prepare_binary(logits, target, weight)
    pw = None if pos_weight is None else torch.as_tensor(pos_weight, device=logits.device).to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw, reduction="none")
    return _weighted_mean(loss, weight)


def ce_loss(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    class_weights: Sequence[float] | Tensor | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Softmax cross-entropy on logits.

    Without a pixel-weight map this equals ``torch.nn.functional.cross_entropy`` with the same
    ``class_weights``/``ignore_index``/``label_smoothing`` (mean reduction: divided by the summed class
    weights of the counted pixels). A pixel-weight map multiplies both numerator and denominator.

    Args:
        logits: ``(N, C, *spatial)``.
        target: ``(N, *spatial)`` or ``(N, 1, *spatial)`` integer class indices.
        weight: optional ``(N, 1, *spatial)`` pixel weights.
        class_weights: ``C`` non-negative per-class weights.
        ignore_index: label value left out of the loss (may lie outside ``[0, C)``, e.g. 255).
        label_smoothing: in [0, 1], as in PyTorch.
    """
    logits, target, weight = _prepare_multiclass(logits, target, weight, ignore_index)
    num_classes = logits.shape[1]
    cw = (
        None
        if class_weights is None
        else _as_class_vector(class_weights, num_classes, "class_weights", logits)
    )
    loss = F.cross_entropy(logits, target, weight=cw, reduction="none", label_smoothing=label_smoothing)
    # PyTorch's mean divides by the class weights of the counted pixels; the same here, times pixel weights.
    norm = torch.ones_like(loss) if cw is None else cw[target]
    if weight is not None:
        w = weight.squeeze(1)
        loss, norm = loss * w, norm * w
    return loss.sum() / norm.sum().clamp_min(_EPS)


def focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    multiclass: bool,
    weight: Tensor | None = None,
    alpha: float | Sequence[float] | None = None,
    gamma: float = 2.0,
    ignore_index: int | None = None,
) -> Tensor:
    """Focal loss ``-alpha_t * (1 - p_t)**gamma * log(p_t)``, averaged over pixels.

    Binary: sigmoid focal loss; ``alpha`` weighs foreground, ``1 - alpha`` background. Multiclass: softmax
    focal loss summed over classes per pixel (so ``gamma=0, alpha=None`` is exactly cross-entropy);
    ``alpha`` is either one value per class or a scalar meaning ``1 - alpha`` for class 0 and ``alpha``
    for every other class. Note that MONAI's ``FocalLoss(use_softmax=True)`` also averages over the class
    axis, so its value is this one divided by ``C``.

    Args:
        logits: ``(N, 1, *spatial)`` (binary) or ``(N, C, *spatial)`` (multiclass).
        target: as for ``bce_loss`` (binary) or ``ce_loss`` (multiclass).
        weight: optional ``(N, 1, *spatial)`` pixel weights; the result is their weighted mean.
        ignore_index: multiclass only: label value left out of the loss.
    """
    if not multiclass:
        logits, target, weight = _prepare_binary(logits, target, weight)
        ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        # log(1 - p_t) computed from the logits for stability; written with (2t - 1) so soft targets work.
        log_one_minus_pt = F.logsigmoid(-logits * (2 * target - 1))
        loss = torch.exp(gamma * log_one_minus_pt) * ce
        if alpha is not None:
            a = float(alpha)  # type: ignore[arg-type]
            loss = (a * target + (1 - a) * (1 - target)) * loss
        return _weighted_mean(loss, weight)

    logits, target, weight = _prepare_multiclass(logits, target, weight, ignore_index)
    num_classes = logits.shape[1]
    idx = target.unsqueeze(1)
    log_norm = torch.logsumexp(logits, dim=1, keepdim=True)
    log_p = logits.gather(1, idx) - log_norm  # (N, 1, *spatial)
    # log(1 - p_t) as a log-sum-exp over the other classes: finite, with finite gradients, even where
    # p_t rounds to 1 (where (1 - p_t) ** gamma would have an infinite derivative for gamma < 1).
    others = logits.scatter(1, idx, float("-inf"))
    log_one_minus_pt = torch.logsumexp(others, dim=1, keepdim=True) - log_norm
    loss = -torch.exp(gamma * log_one_minus_pt) * log_p
    if alpha is not None:
        if isinstance(alpha, int | float):
            vec = torch.full((num_classes,), float(alpha), dtype=logits.dtype, device=logits.device)
            vec[0] = 1.0 - float(alpha)
        else:
            vec = _as_class_vector(alpha, num_classes, "focal alpha", logits)
        loss = vec[target].unsqueeze(1) * loss
    return _weighted_mean(loss, weight)


# --- region losses ----------------------------------------------------------------------------------


def _region_sums(
    logits: Tensor,
    target: Tensor,
    multiclass: bool,
    weight: Tensor | None,
    include_background: bool,
    ignore_index: int | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-class soft sums over batch and space: ``(tp, pred_sum, true_sum)``, each of shape ``(K,)``."""
    if multiclass:
        logits, labels, weight = _prepare_multiclass(logits, target, weight, ignore_index)
        probs = torch.softmax(logits, dim=1)
        onehot = torch.zeros_like(probs).scatter_(1, labels.unsqueeze(1), 1.0)
        if not include_background:
            probs, onehot = probs[:, 1:], onehot[:, 1:]
    else:
        logits, onehot, weight = _prepare_binary(logits, target, weight)
        probs = torch.sigmoid(logits)
    if weight is not None:
        onehot_w, probs_w = onehot * weight, probs * weight
    else:
        onehot_w, probs_w = onehot, probs
    dims = [0, *range(2, probs.ndim)]
    return (probs_w * onehot).sum(dims), probs_w.sum(dims), onehot_w.sum(dims)


def _class_mean(
    per_class: Tensor,
    class_weights: Sequence[float] | Tensor | None,
    num_classes: int,
    include_background: bool,
) -> Tensor:
    """Mean of per-class losses ``(K,)``, weighted by ``class_weights`` (length C) when given."""
    if class_weights is None:
        return per_class.mean()
    cw = _as_class_vector(class_weights, num_classes, "class_weights", per_class)
    if not include_background:
        cw = cw[1:]
    return (cw * per_class).sum() / cw.sum().clamp_min(_EPS)


def tversky_loss(
    logits: Tensor,
    target: Tensor,
    *,
    multiclass: bool,
    weight: Tensor | None = None,
    alpha: float = 0.5,
    beta: float = 0.5,
    smooth: float = 1e-5,
    include_background: bool = True,
    class_weights: Sequence[float] | Tensor | None = None,
    ignore_index: int | None = None,
) -> Tensor:
    """Tversky loss ``1 - (TP + smooth) / (TP + alpha FP + beta FN + smooth)`` on soft counts.

    ``alpha`` penalises false positives, ``beta`` false negatives (``beta > alpha`` favours recall);
    ``alpha = beta = 0.5`` is Dice. Same reduction and other arguments as :func:`soft_dice_loss`;
    equals ``monai.losses.TverskyLoss(batch=True)`` with ``smooth_nr = smooth_dr = smooth``.
    """
    tp, pred, true = _region_sums(logits, target, multiclass, weight, include_background, ignore_index)
    fp, fn = pred - tp, true - tp
    score = (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)
    return _class_mean(1.0 - score, class_weights, logits.shape[1], include_background)


def soft_dice_loss(logits: Tensor, target: Tensor, **options: Any) -> Tensor:
    """Soft Dice loss ``1 - (2 * sum(p g) + smooth) / (sum(p) + sum(g) + smooth)``: :func:`tversky_loss`
    with ``alpha = beta = 0.5``, and every other argument of it (``multiclass`` is required).

    Sums run over the batch and all spatial axes, per class; the result is the mean over classes
    (weighted by ``class_weights``, length C, when given). Equals ``monai.losses.DiceLoss(batch=True)``
    with ``smooth_nr = smooth_dr = smooth``.

    Args:
        logits: ``(N, 1, *spatial)`` (binary: foreground channel only) or ``(N, C, *spatial)``.
        target: ``(N, 1, *spatial)`` in [0, 1] (binary) or integer class indices (multiclass).
        weight: optional ``(N, 1, *spatial)`` weights on every soft sum.
        include_background: multiclass only: False leaves class 0 out of the mean.
        ignore_index: multiclass only: label value left out of the sums.
    """
    return tversky_loss(logits, target, alpha=0.5, beta=0.5, **options)


def iou_loss(logits: Tensor, target: Tensor, **options: Any) -> Tensor:
    """Soft Jaccard loss ``1 - (sum(p g) + smooth) / (sum(p) + sum(g) - sum(p g) + smooth)``:
    :func:`tversky_loss` with ``alpha = beta = 1``; same reduction and arguments as :func:`soft_dice_loss`."""
    return tversky_loss(logits, target, alpha=1.0, beta=1.0, **options)
