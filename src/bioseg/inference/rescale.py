"""Rescaled prediction: resize an image so that its objects have the size the model was trained on.

A model sees objects of the sizes in its training masks; an image taken at another magnification shows
them larger or smaller, and both the network and the tuned object settings (seed depth, sizes) then fail.
The factor comes from ``infer.rescale`` (a number), from ``infer.object_size`` (the user's diameter of the
objects) or, with ``rescale: auto``, from the depth diameter (:mod:`bioseg.data.object_sizes`) of the
foreground the model predicts at the image's own scale, compared with that of its training masks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bioseg.config import Experiment
from bioseg.data.object_sizes import depth_diameter
from bioseg.errors import BiosegError
from bioseg.inference.instances import foreground_probability

#: factors closer to 1 than this (ratio) are not applied: resampling would cost more than it corrects
TOLERANCE = 1.15
#: the range of factors applied; an estimate beyond it is clipped (and said)
LIMITS = (0.25, 4.0)


def scaled_shape(spatial: tuple[int, ...], factor: float) -> tuple[int, ...]:
    return tuple(max(1, round(d * factor)) for d in spatial)


def reference_size(objects: dict[str, Any] | None) -> float:
    """The training objects' depth diameter, pixels; a clear error when the model has none."""
    size = (objects or {}).get("depth_diameter_px")
    if not size:
        raise BiosegError(
            "this model stores no size of its training objects (it was trained by an earlier release or from a "
            "patch set), so it cannot rescale images by their objects: give a factor (--rescale 0.5) or train it again"
        )
    return float(size)


def reference_head(cfg: Experiment) -> str:
    """The head whose map says where objects are: the instance foreground head, else the first head that
    is not a boundary map."""
    inst = cfg.post.instances
    if inst.mode != "off" and inst.foreground_head is not None:
        return inst.foreground_head
    for name, head in cfg.heads.items():
        if head.target != "boundary":
            return name
    raise BiosegError(
        "rescale needs a head that predicts the inside of objects, but every head of this model is a boundary map; "
        "give a fixed factor with --rescale"
    )


def predicted_object_size(probabilities: dict[str, np.ndarray], cfg: Experiment) -> float | None:
    """Depth diameter of the predicted foreground (pixels), None when nothing is predicted."""
    head = reference_head(cfg)
    return depth_diameter(foreground_probability(probabilities[head], cfg.heads[head].target) > 0.5)


def factor_for(reference_px: float, object_px: float) -> float:
    """The resize factor that brings objects of ``object_px`` to ``reference_px``: 1 within the tolerance,
    clipped to :data:`LIMITS`."""
    factor = reference_px / object_px
    if 1 / TOLERANCE < factor < TOLERANCE:
        return 1.0
    return float(np.clip(factor, *LIMITS))
