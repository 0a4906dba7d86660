"""Segmentation metrics: semantic (Dice, IoU, accuracy per class), instance (matching at IoU thresholds,
F1/AP/PQ, merges and splits, ARand/VOI) and topology (clDice)."""

from bioseg.metrics.instance import (
    DEFAULT_THRESHOLDS,
    DSB_THRESHOLDS,
    InstanceScores,
    adapted_rand_error,
    aggregate,
    dsb_average_precision,
    iou_matrix,
    match_instances,
    match_pairs,
    variation_of_information,
)
from bioseg.metrics.semantic import SemanticMeter, confusion_matrix, describe_mean, scores_from_confusion
from bioseg.metrics.skeleton import cldice_score, topology_scores

__all__ = [
    "DEFAULT_THRESHOLDS",
    "DSB_THRESHOLDS",
    "InstanceScores",
    "SemanticMeter",
    "adapted_rand_error",
    "aggregate",
    "cldice_score",
    "confusion_matrix",
    "describe_mean",
    "dsb_average_precision",
    "iou_matrix",
    "match_instances",
    "match_pairs",
    "scores_from_confusion",
    "topology_scores",
    "variation_of_information",
]
