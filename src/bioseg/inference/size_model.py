"""A size model, as Cellpose has one: the object size of an image read from the network's own features.

``rescale: auto`` first measured objects on a prediction at the image's own scale. Where objects touch
densely (EM membranes, ISBI 2012), a wrong scale makes that prediction wrong in a way that still looks
right: at half the magnification the thin membranes are missed and the merged cells fall within the
training sizes, so nothing is rescaled (F1 0.05 against 0.74 at 1×, benchmarks/bench_scale.py). The size
model does not segment: it reads the mean and spread of every encoder level's features (a "style" of the
image) and maps them to the log of the object size with a ridge regression, fitted at the end of training
on the training images resized by random factors (their sizes known from their masks).

Which estimate ``auto`` uses is measured per model at the end of training, on the validation images
resized by 0.5, 1 and 2: the one whose chosen factors are nearer the true ones is stored as ``use``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from bioseg.data.resize import resample
from bioseg.inference.rescale import LIMITS, centre_crop, scaled_shape

#: voxels the features are read from (a centre crop): the size is a property of the texture, not of the field
STYLE_VOXELS = 512 * 512
#: training pairs: images times random factors (log-uniform within FIT_RANGE)
FIT_PAIRS, FIT_RANGE = 192, (1 / 3, 3.0)
#: ridge penalty on standardised features
ALPHA = 1.0
#: resize factors of the validation images on which the two estimates are compared
CHECK_FACTORS, CHECK_IMAGES = (0.5, 1.0, 2.0), 8


def has_encoders(net: torch.nn.Module) -> bool:
    return isinstance(getattr(net, "encoders", None), torch.nn.ModuleList)


@torch.inference_mode()
def style(net: torch.nn.Module, image: np.ndarray, autocast: torch.dtype | None = None) -> np.ndarray:
    """Mean and standard deviation of every channel of every encoder level of ``net`` on the centre of
    ``image`` ``(C, *spatial)`` (normalised): one vector."""
    crop = centre_crop(image, STYLE_VOXELS)
    divisor = net.size_divisor
    divisor = (divisor,) * (image.ndim - 1) if isinstance(divisor, int) else divisor
    pad = [(0, 0)] + [(0, (-n) % d) for n, d in zip(crop.shape[1:], divisor, strict=True)]
    device = next(net.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(np.pad(crop, pad, mode="edge"), dtype=np.float32))[None].to(device)
    levels: list[torch.Tensor] = []
    hooks = [enc.register_forward_hook(lambda _m, _i, out: levels.append(out)) for enc in net.encoders]
    try:
        with torch.autocast(device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            net(x.contiguous(memory_format=_layout(x.dim())))
    finally:
        for hook in hooks:
            hook.remove()
    dims = tuple(range(2, x.dim()))
    parts = [torch.cat([f.float().mean(dims)[0], f.float().std(dims)[0]]) for f in levels]
    return torch.cat(parts).cpu().numpy().astype(np.float64)


def _layout(ndim: int) -> torch.memory_format:
    return torch.channels_last if ndim == 4 else torch.channels_last_3d


def fit_size_model(
    net: torch.nn.Module,
    images: list[np.ndarray],
    sizes: list[float],
    autocast: torch.dtype | None = None,
    seed: int = 0,
) -> dict[str, Any] | None:
    """A ridge regression from :func:`style` to the log of the depth diameter, fitted on ``images``
    (normalised) resized by random factors, each image's size (``sizes``, pixels, from its mask) scaled by
    its factor. None when there are fewer than two images with objects or ``net`` has no encoder levels."""
    pairs = [(im, d) for im, d in zip(images, sizes, strict=True) if d]
    if len(pairs) < 2 or not has_encoders(net):
        return None
    rng = np.random.default_rng(seed)
    pairs = pairs[:: max(1, math.ceil(len(pairs) / FIT_PAIRS))]
    per_image = max(2, math.ceil(FIT_PAIRS / len(pairs)))
    features, targets = [], []
    for image, size in pairs:
        for factor in np.exp(rng.uniform(*np.log(FIT_RANGE), per_image)):
            # the crop that, resized, is what style() reads: a few seconds for all pairs
            crop = centre_crop(image, int(STYLE_VOXELS / factor ** (image.ndim - 1)))
            resized = resample(crop, scaled_shape(crop.shape[1:], float(factor)), nearest=False)
            features.append(style(net, resized, autocast))
            targets.append(math.log(size * factor))
    x, y = np.array(features), np.array(targets)
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / scale
    weights = np.linalg.solve(z.T @ z + ALPHA * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return {
        "features": "mean and std of each encoder level",
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "weights": weights.tolist(),
        "bias": float(y.mean()),
        "pairs": len(y),
        "fit_range": list(FIT_RANGE),
    }


def estimate_size(model: dict[str, Any], net: torch.nn.Module, image: np.ndarray, autocast=None) -> float:
    """The depth diameter (pixels) the size ``model`` reads from ``image`` (normalised)."""
    z = (style(net, image, autocast) - np.asarray(model["mean"])) / np.asarray(model["scale"])
    return float(math.exp(z @ np.asarray(model["weights"]) + model["bias"]))


def factor_error(chosen: float, resized_by: float) -> float:
    """How far (|log|) a chosen factor is from the one that undoes a resize: 0 when it does exactly."""
    return abs(math.log(chosen * resized_by))


def compare_estimates(images: list[np.ndarray], choosers: dict[str, Any]) -> dict[str, float]:
    """Median factor errors (:func:`factor_error`) of each chooser (name → function of an image that
    returns the factor it would apply) on ``images`` resized by :data:`CHECK_FACTORS`."""
    errors: dict[str, list[float]] = {name: [] for name in choosers}
    for image in images:
        for resized_by in CHECK_FACTORS:
            resized = resample(image, scaled_shape(image.shape[1:], resized_by), nearest=False)
            for name, choose in choosers.items():
                errors[name].append(factor_error(float(np.clip(choose(resized), *LIMITS)), resized_by))
    return {name: round(float(np.median(values)), 4) for name, values in errors.items() if values}


def size_model_for(
    predictor: Any,
    train: list[tuple[np.ndarray, float | None]],
    check: list[np.ndarray],
    objects: dict[str, Any],
) -> dict[str, Any] | None:
    """The size model of ``predictor``'s network fitted on ``train`` (normalised images and the depth
    diameters of their masks), with ``use``: whether it chose factors nearer the truth than the first pass
    did on the ``check`` images (at most :data:`CHECK_IMAGES`, evenly spaced) resized by :data:`CHECK_FACTORS`.
    ``objects`` holds the training spreads (masks and predictions) each is compared with."""
    from bioseg.inference.rescale import factor_for, predicted_object_size, reference_sizes

    net, autocast = predictor.fast_net, predictor.autocast
    model = fit_size_model(net, [im for im, _ in train], [d for _, d in train], autocast)
    masks, predicted = objects.get("depth_diameter_px"), objects.get("predicted_depth_diameter_px")
    if model is None or not masks:
        return None
    check = check[:: max(1, math.ceil(len(check) / CHECK_IMAGES))]

    def by_size_model(image: np.ndarray) -> float:
        return factor_for(masks, estimate_size(model, net, image, autocast))

    def by_first_pass(image: np.ndarray) -> float:
        probabilities = predictor.predict_prepared(centre_crop(image, STYLE_VOXELS)).probabilities
        size = predicted_object_size(probabilities, predictor.cfg)
        return 1.0 if size is None else factor_for(reference_sizes(objects), size)

    choosers = {"size_model": by_size_model} | ({"first_pass": by_first_pass} if predicted else {})
    errors = compare_estimates(check, choosers)
    model["check"] = {"factors": list(CHECK_FACTORS), "images": len(check), "median_factor_error": errors}
    model["use"] = errors["size_model"] < errors.get("first_pass", math.inf)
    return model
