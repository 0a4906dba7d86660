"""Segmentation metrics: semantic (Dice, IoU, accuracy per class)."""

from bioseg.metrics.semantic import SemanticMeter, confusion_matrix, scores_from_confusion

__all__ = ["SemanticMeter", "confusion_matrix", "scores_from_confusion"]
