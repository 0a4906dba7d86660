"""Rescaled prediction: resize an image so that its objects have the size the model was trained on.

A model sees objects of the sizes in its training masks; an image taken at another magnification shows
them larger or smaller, and both the network and the tuned object settings (seed depth, sizes) then fail.
The factor comes from ``infer.rescale`` (a number), from ``infer.object_size`` (the user's diameter of the
objects) or, with ``rescale: auto``, from the depth diameter (:mod:`bioseg.data.object_sizes`) of the
foreground the model predicts at the image's own scale, compared with those of its training masks: an
image whose objects lie within the training images' spread (10th to 90th percentile, with a tolerance)
is predicted as it is; one outside is resized to bring its objects to the training median. Measured on
DSB 2018 (benchmarks/bench_scale.py): matching every image to one pooled training size resized the
in-range test images too and cost 0.08 F1 at their own scale.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bioseg.config import Experiment
from bioseg.data.object_sizes import depth_diameter
from bioseg.errors import BiosegError
from bioseg.inference.instances import foreground_probability

#: training images predicted to measure the sizes the model itself sees (evenly spaced when more)
MEASURED_IMAGES = 32
#: voxels predicted for that measurement in all (32 images of 512²): larger images are centre-cropped, so
#: that measuring costs seconds at the end of a training, not the minutes of predicting big 3D volumes whole
MEASURED_VOXELS = 32 * 512 * 512
#: how far (ratio) beyond the training spread an object size still counts as within it
TOLERANCE = 1.15
#: the range of factors applied; an estimate beyond it is clipped (and said)
LIMITS = (0.25, 4.0)


def scaled_shape(spatial: tuple[int, ...], factor: float) -> tuple[int, ...]:
    return tuple(max(1, round(d * factor)) for d in spatial)


def reference_sizes(objects: dict[str, Any] | None) -> dict[str, float]:
    """Depth diameters (``p10``, ``median``, ``p90``, pixels) of the foreground the model predicts on its
    training images (else of their masks); a clear error when the model has neither."""
    objects = objects or {}
    sizes = objects.get("predicted_depth_diameter_px") or objects.get("depth_diameter_px")
    if not isinstance(sizes, dict):
        raise BiosegError(
            "this model stores no size of its training objects (it was trained by an earlier release or from a "
            "patch set), so it cannot rescale images by their objects: give a factor (--rescale 0.5) or train it again"
        )
    return {k: float(sizes[k]) for k in ("p10", "median", "p90")}


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


def in_range(reference: dict[str, float], object_px: float) -> bool:
    """Whether objects of ``object_px`` lie within the training spread (with :data:`TOLERANCE`)."""
    return reference["p10"] / TOLERANCE <= object_px <= reference["p90"] * TOLERANCE


def predicted_sizes(predictor: Any, images: list[np.ndarray]) -> dict[str, float] | None:
    """Quantiles of the depth diameters of what ``predictor`` (a Predictor) finds in normalised training ``images``
    (at most :data:`MEASURED_IMAGES`, evenly spaced): the reference that new images are compared with.
    Measured with the model itself, its own bias cancels: on ISBI 2012 a model trained with scale
    augmentation predicted interiors thinner than drawn, and compared with the masks, ``auto`` resized
    the test images at their own scale and lost 0.59 F1 (benchmarks/bench_scale.py). None when the
    model has no head for the objects' inside or predicts nothing."""
    try:
        reference_head(predictor.cfg)
    except BiosegError:
        return None
    chosen = images[:: max(1, math.ceil(len(images) / MEASURED_IMAGES))]
    budget = MEASURED_VOXELS // max(1, len(chosen))
    found = [predicted_object_size(predictor.predict_prepared(centre_crop(image, budget)).probabilities, predictor.cfg)
             for image in chosen]  # fmt: skip
    found = [size for size in found if size is not None]
    if not found:
        return None
    p10, median, p90 = (round(float(v), 2) for v in np.percentile(found, (10, 50, 90)))
    return {"p10": p10, "median": median, "p90": p90}


def centre_crop(image: np.ndarray, voxels: int, shortest: int = 32) -> np.ndarray:
    """The middle of ``image`` ``(C, *spatial)`` with at most ``voxels`` voxels (about: never less than
    ``shortest`` along an axis): the long axes are shortened by one ratio, an axis that would fall under
    ``shortest`` (the few slices of a stack) keeps that many. The image itself when it is small enough.
    Depth diameters of a crop are those of the whole: the distance transform does not end at its edge."""
    spatial = image.shape[1:]
    if math.prod(spatial) <= voxels:
        return image
    floor = {i: min(n, shortest) for i, n in enumerate(spatial)}
    fixed: set[int] = set()
    while True:
        free = [i for i in range(len(spatial)) if i not in fixed]
        room = voxels / math.prod(floor[i] for i in fixed)
        ratio = (room / math.prod(spatial[i] for i in free)) ** (1 / len(free)) if free else 1.0
        short = {i for i in free if spatial[i] * ratio < floor[i]}
        if not short or len(fixed | short) == len(spatial):
            break
        fixed |= short
    keep = [floor[i] if i in fixed else max(floor[i], math.floor(spatial[i] * ratio)) for i in range(len(spatial))]
    start = [(n - k) // 2 for n, k in zip(spatial, keep, strict=True)]
    return image[(slice(None), *(slice(a, a + k) for a, k in zip(start, keep, strict=True)))]


def factor_for(reference: dict[str, float], object_px: float) -> float:
    """The resize factor for objects of ``object_px``: 1 within the training spread, else the one that
    brings them to the training median, clipped to :data:`LIMITS`."""
    if in_range(reference, object_px):
        return 1.0
    return float(np.clip(reference["median"] / object_px, *LIMITS))
