"""Segmentation losses: pure functions, registered terms and the per-head composite.

All losses take logits and apply the sigmoid/softmax once, inside; see :mod:`bioseg.losses.functional`
for the shape and weighting conventions.
"""

from bioseg.losses import cldice  # noqa: F401  (registers the 'cldice' term)
from bioseg.losses.composite import CompositeLoss, HeadLoss, build_loss
from bioseg.losses.functional import bce_loss, ce_loss, focal_loss, iou_loss, soft_dice_loss, tversky_loss
from bioseg.losses.terms import LOSSES, LossModule, build_term

__all__ = [
    "LOSSES",
    "CompositeLoss",
    "HeadLoss",
    "LossModule",
    "bce_loss",
    "build_loss",
    "build_term",
    "ce_loss",
    "focal_loss",
    "iou_loss",
    "soft_dice_loss",
    "tversky_loss",
]
