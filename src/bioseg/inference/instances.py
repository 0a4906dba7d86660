"""Objects from a prediction's head maps, as ``post.instances`` configures them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bioseg.config import Experiment
from bioseg.data.resize import resample
from bioseg.postprocess.instances import boundaries_to_instances, foreground_to_instances


def foreground_probability(probabilities: np.ndarray, target: str) -> np.ndarray:
    """``(*spatial)`` probability of being inside an object, from a head's ``(K, *spatial)`` map."""
    if target == "three_class":  # background, interior, boundary
        return probabilities[1] + probabilities[2]
    return probabilities[0] if probabilities.shape[0] == 1 else 1.0 - probabilities[0]


def boundary_probability(probabilities: np.ndarray, target: str) -> np.ndarray:
    return probabilities[2] if target == "three_class" else probabilities[0]


def _sequential(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 1..N in order (objects lost in resampling leave no gap), 0 kept as background."""
    ids, inverse = np.unique(labels, return_inverse=True)
    return (inverse.reshape(labels.shape) + (ids[0] != 0)).astype(np.int32)


def predict_instances(
    probabilities: dict[str, np.ndarray],
    cfg: Experiment,
    spacing: Sequence[float] | None = None,
    timings: dict | None = None,
    scale: float = 1.0,
) -> np.ndarray | None:
    """Instance labels ``(*spatial)`` int32 from head probabilities, or None when ``post.instances`` is off.

    ``scale`` (a :class:`~bioseg.inference.predictor.Prediction`'s): the objects are found in the maps
    resized by it, where they have the training size that ``post.instances`` was tuned for (seed depth,
    minimum and maximum sizes), and their labels are mapped back to the image's own grid."""
    inst = cfg.post.instances
    if inst.mode == "off":
        return None
    if scale != 1.0:
        spatial = next(iter(probabilities.values())).shape[1:]
        shape = tuple(max(1, round(d * scale)) for d in spatial)
        resized = {h: resample(p, shape, nearest=False) for h, p in probabilities.items()}
        physical = tuple(v / scale for v in spacing) if spacing else None
        labels = predict_instances(resized, cfg, physical, timings)
        return _sequential(resample(labels[None], spatial, nearest=True)[0])
    spacing = tuple(spacing) if spacing else None
    fg_head = inst.foreground_head
    if inst.mode == "foreground":
        fg = foreground_probability(probabilities[fg_head], cfg.heads[fg_head].target)
        return foreground_to_instances(fg, inst, spacing=spacing, timings=timings)
    b_head = inst.boundary_head
    boundary = boundary_probability(probabilities[b_head], cfg.heads[b_head].target)
    mask = None
    if fg_head is not None:
        mask = foreground_probability(probabilities[fg_head], cfg.heads[fg_head].target) > 0.5
    return boundaries_to_instances(boundary, inst, spacing=spacing, mask=mask, timings=timings)
