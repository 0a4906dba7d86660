"""Semantic segmentation scores: confusion matrix → Dice, IoU and accuracy per class.

Everything is derived from one ``(C, C)`` confusion matrix (rows = truth, columns = prediction), so
per-image scores and dataset-level scores (matrices summed over images) use the same code.

Convention for a class absent from both truth and prediction: Dice = IoU = 1.0 (nothing to find,
nothing found). A class absent from the truth but predicted scores 0; so does a class present in
the truth but never predicted.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from bioseg.errors import BiosegError

__all__ = ["confusion_matrix", "describe_mean", "scores_from_confusion", "SemanticMeter"]


def _as_labels(x: torch.Tensor | np.ndarray, what: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.dtype == torch.bool:
        return t.long()
    if t.is_floating_point() or t.is_complex():
        raise BiosegError(
            f"{what} has dtype {t.dtype}; expected integer class labels: "
            "take the argmax over classes (or threshold a binary probability) before scoring"
        )
    return t


def confusion_matrix(
    pred: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    num_classes: int,
    valid: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """Count pixels per (true class, predicted class).

    Args:
        pred: integer labels, any shape ``(*dims)`` (a batch is fine: it is summed over).
        target: integer labels, same shape as ``pred``.
        num_classes: C; labels must lie in ``[0, C)`` where ``valid`` is true.
        valid: optional bool mask broadcastable to ``(*dims)``; pixels where it is false are not counted
            (their labels may be anything, e.g. an "ignore" value).

    Returns:
        ``(C, C)`` int64 tensor on the device of ``target``; ``cm[t, p]`` = pixels of class t predicted as p.
    """
    if num_classes < 1:
        raise BiosegError(f"num_classes is {num_classes}; expected at least 1")
    p = _as_labels(pred, "pred")
    t = _as_labels(target, "target")
    if p.shape != t.shape:
        raise BiosegError(
            f"pred has shape {tuple(p.shape)} but target has shape {tuple(t.shape)}; "
            "they must be label maps of the same shape"
        )
    p = p.to(t.device)
    if valid is not None:
        v = torch.as_tensor(valid, device=t.device)
        if v.dtype != torch.bool:
            raise BiosegError(f"valid has dtype {v.dtype}; expected a bool mask of the pixels to count")
        try:
            v = torch.broadcast_to(v, t.shape)
        except RuntimeError as e:
            raise BiosegError(
                f"valid has shape {tuple(v.shape)}, which does not broadcast to "
                f"the labels' shape {tuple(t.shape)}"
            ) from e
        p, t = p[v], t[v]
    p = p.reshape(-1).long()
    t = t.reshape(-1).long()
    if t.numel():
        lo = int(torch.minimum(p.min(), t.min()))
        hi = int(torch.maximum(p.max(), t.max()))
        if lo < 0 or hi >= num_classes:
            raise BiosegError(
                f"labels range over [{lo}, {hi}] but num_classes is {num_classes} "
                f"(valid labels 0..{num_classes - 1}); "
                "fix num_classes, or mask out ignored pixels with `valid`"
            )
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _check_background(background: int | None, c: int) -> None:
    if background is not None and not 0 <= background < c:
        raise BiosegError(
            f"background class {background} is not one of the {c} classes 0..{c - 1}; "
            "give one of them, or None when no class is background"
        )


def describe_mean(class_names: list[str], background: int | None = 0) -> str:
    """What a mean over classes covers, in words: ``"over classes 1–4 (a, b, c, d); background class 0
    (background) left out"``, or ``"over all 3 classes 0–2 (…); no background class"``."""
    _check_background(background, len(class_names))
    kept = [i for i in range(len(class_names)) if i != background]
    names = ", ".join(class_names[i] for i in kept)
    if len(kept) == 1:
        span = f"class {kept[0]}"
    elif kept == list(range(kept[0], kept[-1] + 1)):
        span = f"classes {kept[0]}–{kept[-1]}"
    else:
        span = "classes " + ", ".join(map(str, kept))
    if background is None:
        return f"over all {len(kept)} {span} ({names}); no background class"
    return f"over {span} ({names}); background class {background} ({class_names[background]}) left out"


def scores_from_confusion(
    cm: torch.Tensor | np.ndarray, class_names: list[str] | None = None, background: int | None = 0
) -> dict[str, float]:
    """Dice, IoU per class, their means without the background class, and pixel accuracy from a
    confusion matrix.

    Args:
        cm: ``(C, C)`` counts, rows = truth, columns = prediction, C >= 2.
        class_names: C names used in the keys; default ``"0"``, ``"1"``, ...
        background: the class left out of the means (``data.background_class``); None: none is.

    Returns:
        ``{"dice/<name>", "iou/<name>"}`` for every class (background included), ``"dice_mean"`` and
        ``"iou_mean"`` over every class but ``background`` (for a binary task with background 0: the
        foreground class alone), and ``"accuracy"`` (correct pixels / counted pixels; NaN when no pixel
        was counted). A class absent from both truth and prediction has Dice = IoU = 1.0.
    """
    m = torch.as_tensor(cm).detach().to("cpu", torch.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise BiosegError(
            f"confusion matrix has shape {tuple(m.shape)}; expected (C, C) with C >= 2 (background + classes)"
        )
    c = m.shape[0]
    names = [str(i) for i in range(c)] if class_names is None else list(class_names)
    if len(names) != c:
        raise BiosegError(
            f"got {len(names)} class names {names} for a {c}-class confusion matrix; give {c} names"
        )
    tp = m.diagonal()
    fn = m.sum(1) - tp
    fp = m.sum(0) - tp
    union = tp + fp + fn
    empty = union == 0
    dice = torch.where(empty, 1.0, 2 * tp / (2 * tp + fp + fn).clamp_min(1))
    iou = torch.where(empty, 1.0, tp / union.clamp_min(1))
    out: dict[str, float] = {}
    for i, name in enumerate(names):
        out[f"dice/{name}"] = float(dice[i])
    for i, name in enumerate(names):
        out[f"iou/{name}"] = float(iou[i])
    _check_background(background, c)
    kept = torch.tensor([i for i in range(c) if i != background])
    out["dice_mean"] = float(dice[kept].mean())
    out["iou_mean"] = float(iou[kept].mean())
    total = float(m.sum())
    out["accuracy"] = float(tp.sum()) / total if total > 0 else math.nan
    return out


class SemanticMeter:
    """Accumulates confusion matrices over images for dataset-level scores.

    ``update`` returns the matrix of the pixels it was given, so per-image scores are
    ``scores_from_confusion(meter.update(pred, target))``.
    """

    def __init__(self, num_classes: int, class_names: list[str] | None = None, background: int | None = 0) -> None:
        if num_classes < 2:
            raise BiosegError(f"num_classes is {num_classes}; expected at least 2 (background + one class)")
        if class_names is not None and len(class_names) != num_classes:
            raise BiosegError(
                f"got {len(class_names)} class names for num_classes={num_classes}; give one name per class"
            )
        _check_background(background, num_classes)
        self.num_classes = num_classes
        self.class_names = class_names
        self.background = background
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        self.confusion.zero_()

    def update(
        self,
        pred: torch.Tensor | np.ndarray,
        target: torch.Tensor | np.ndarray,
        valid: torch.Tensor | np.ndarray | None = None,
    ) -> torch.Tensor:
        """Add labels of any shape ``(*dims)``; returns their ``(C, C)`` matrix (on the CPU)."""
        cm = confusion_matrix(pred, target, self.num_classes, valid).cpu()
        self.confusion += cm
        return cm

    def compute(self) -> dict[str, float]:
        """Scores of everything added since the last reset (pixels pooled over images)."""
        return scores_from_confusion(self.confusion, self.class_names, self.background)
