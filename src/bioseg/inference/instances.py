"""Objects from a prediction's head maps, as ``post.instances`` configures them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bioseg.config import Experiment
from bioseg.postprocess.instances import InstanceParams, boundaries_to_instances, foreground_to_instances


def foreground_probability(probabilities: np.ndarray, target: str) -> np.ndarray:
    """``(*spatial)`` probability of being inside an object, from a head's ``(K, *spatial)`` map."""
    if target == "three_class":  # background, interior, boundary
        return probabilities[1] + probabilities[2]
    return probabilities[0] if probabilities.shape[0] == 1 else 1.0 - probabilities[0]


def boundary_probability(probabilities: np.ndarray, target: str) -> np.ndarray:
    return probabilities[2] if target == "three_class" else probabilities[0]


def predict_instances(
    probabilities: dict[str, np.ndarray], cfg: Experiment, spacing: Sequence[float] | None = None, timings=None
) -> np.ndarray | None:
    """Instance labels ``(*spatial)`` int32 from head probabilities, or None when ``post.instances`` is off."""
    inst = cfg.post.instances
    if inst.mode == "off":
        return None
    spacing = tuple(spacing) if spacing else None
    fg_head = inst.foreground_head
    if inst.mode == "foreground":
        fg = foreground_probability(probabilities[fg_head], cfg.heads[fg_head].target)
        return foreground_to_instances(
            fg,
            threshold=inst.threshold,
            method=inst.foreground_method,
            min_distance=inst.min_distance,
            spacing=spacing,
            min_size=inst.min_size,
        )
    b_head = inst.boundary_head
    boundary = boundary_probability(probabilities[b_head], cfg.heads[b_head].target)
    mask = None
    if fg_head is not None:
        mask = foreground_probability(probabilities[fg_head], cfg.heads[fg_head].target) > 0.5
    params = InstanceParams(
        threshold=inst.threshold,
        seed_method=inst.seed_method,
        h=inst.h,
        min_distance=inst.min_distance,
        sigma_seeds=inst.sigma_seeds,
        agglomeration=inst.agglomeration,
        merge_threshold=inst.merge_threshold,
        beta=inst.beta,
        min_size=inst.min_size,
        max_size=inst.max_size,
        small_objects=inst.small_objects,
        spacing=spacing,
    )
    return boundaries_to_instances(boundary, params, mask=mask, timings=timings)
