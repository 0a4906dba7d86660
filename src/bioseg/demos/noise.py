"""Random fields that every demo generator draws its textures, illumination and shapes from.

:func:`smooth_noise` gives slow variation (illumination, blotches, warps of a shape) and
:func:`fine_texture` grain (granules, chromatin, mottling); both work in any number of dimensions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

__all__ = ["fine_texture", "smooth_noise"]

#: width of a node's Gaussian, in node spacings: neighbouring bumps overlap enough that the field is smooth
#: between nodes, yet each node still shapes its own bump
WIDTH = 0.6


def smooth_noise(rng: np.random.Generator, shape: Sequence[int], cells: int | Sequence[int]) -> np.ndarray:
    """Smooth random field in [-1, 1] (float32) with about ``cells`` bumps along each axis.

    A coarse grid of ``cells + 1`` standard-normal nodes per axis, spanning the array from edge to edge,
    is interpolated axis by axis with normalised Gaussian weights (:data:`WIDTH` node spacings wide): a
    separable tensor product, far cheaper than a spline zoom at full size, most of all in 3D. ``cells``
    is one count for every axis or one per axis (each at least 1). einsum rather than a matrix product:
    threaded BLAS is slow for such tiny products. Draws ``prod(cells + 1)`` normals from ``rng``.
    """
    shape = tuple(int(s) for s in shape)
    counts = (int(cells),) * len(shape) if np.isscalar(cells) else tuple(int(c) for c in cells)
    if len(counts) != len(shape) or min(counts, default=1) < 1:
        raise ValueError(f"cells={cells!r} must be one count >= 1, or one per axis of shape {shape}")
    field = rng.standard_normal(tuple(c + 1 for c in counts))
    for axis, (size, c) in enumerate(zip(shape, counts, strict=True)):
        nodes = np.linspace(0, size - 1, c + 1)
        width = WIDTH * max((size - 1) / c, 1.0)
        weights = np.exp(-0.5 * ((np.arange(size)[:, None] - nodes[None, :]) / width) ** 2)
        weights /= weights.sum(axis=1, keepdims=True)
        moved = np.einsum("ij,...j->...i", weights, np.moveaxis(field, axis, -1))
        field = np.moveaxis(moved, -1, axis)
    return (field / max(float(np.abs(field).max()), 1e-6)).astype(np.float32)


def fine_texture(
    rng: np.random.Generator, shape: Sequence[int], sigma: float | Sequence[float], dtype: type = np.float64
) -> np.ndarray:
    """Band-limited noise with unit standard deviation: white noise blurred by ``sigma`` (one per axis or
    one for all), computed in ``dtype`` (float32 halves the memory of a large volume)."""
    tex = ndi.gaussian_filter(rng.standard_normal(tuple(shape)).astype(dtype, copy=False), sigma)
    return tex / max(float(tex.std()), 1e-6)
