"""Resample arrays; fit images into a fixed square (aspect ratio kept, then padded) and map predictions back.

Used when ``data.resize`` is set: whole specimens (a wing, an embryo) are seen at once at a fixed size,
and every prediction is returned at the size of the image it came from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Fit:
    """How an image of ``original`` spatial size was scaled to ``scaled`` and padded to ``size``."""

    original: tuple[int, ...]
    scaled: tuple[int, ...]
    size: int


def plan_fit(spatial: tuple[int, ...], size: int) -> Fit:
    factor = size / max(spatial)
    scaled = tuple(max(1, min(size, round(d * factor))) for d in spatial)
    return Fit(tuple(spatial), scaled, size)


def resample(array: np.ndarray, shape: tuple[int, ...], nearest: bool) -> np.ndarray:
    """``(C, *spatial)`` → ``(C, *shape)``: linear for intensities, nearest for labels."""
    if tuple(array.shape[1:]) == tuple(shape):
        return array
    x = torch.from_numpy(np.ascontiguousarray(array))[None]
    if nearest:
        out = F.interpolate(x.float(), size=shape, mode="nearest-exact").to(x.dtype)
    else:
        mode = "bilinear" if len(shape) == 2 else "trilinear"
        out = F.interpolate(x.float(), size=shape, mode=mode, align_corners=False, antialias=len(shape) == 2)
    return out[0].numpy()


def fit_to_square(array: np.ndarray, fit: Fit, nearest: bool = False) -> np.ndarray:
    """``(C, *spatial)`` scaled into the square and zero-padded at the end of each axis."""
    scaled = resample(array, fit.scaled, nearest)
    pads = [(0, 0)] + [(0, fit.size - d) for d in fit.scaled]
    return np.pad(scaled, pads)


def restore(array: np.ndarray, fit: Fit, nearest: bool = False) -> np.ndarray:
    """The inverse of ``fit_to_square``: ``(C, size, …)`` → ``(C, *original)``."""
    crop = (slice(None),) + tuple(slice(0, d) for d in fit.scaled)
    return resample(np.ascontiguousarray(array[crop]), fit.original, nearest)
