"""The U-Net pixel-weight map and the distances to the two nearest objects it is built from.

The U-Net weight map (Ronneberger et al. 2015) is

    w(x) = w_c(x) + w0 · exp(-(d1(x) + d2(x))² / (2σ²))

with ``d1``/``d2`` the distances from ``x`` to the nearest and second nearest object (0 inside an object
for its own object). ``d1``/``d2`` come from one Euclidean distance transform per object, computed only in
the object's bounding box grown by ``max_distance``: every pixel within ``max_distance`` of the object lies
in that window, so the result is exact wherever ``d1 + d2 <= max_distance``, and the cost grows with the
number of objects times the window size, never with objects × image size.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
from scipy import ndimage as ndi

from bioseg.data.targets import _check_labels, class_balance_weights
from bioseg.errors import BiosegError

# Default truncation: beyond it the w0 term is below this fraction of w0.
_TRUNCATION_FRACTION = 1e-4


# --- input checks -------------------------------------------------------------------------------------


def _check_spacing(spacing: float | Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    values = np.asarray(spacing, dtype=np.float64)
    if values.ndim == 0:
        values = np.full(ndim, float(values))
    if values.shape != (ndim,) or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise BiosegError(
            f"spacing must be one positive voxel size per spatial axis ({ndim}); found {spacing!r}: "
            "pass e.g. spacing=(2.0, 0.5, 0.5) for (z, y, x)"
        )
    return tuple(float(v) for v in values)


def _check_mask(mask: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise BiosegError(f"{name} has shape {mask.shape}; it must match the labels' shape {shape}")
    return mask


# --- distances to the two nearest objects -------------------------------------------------------------


def _object_slices(labels: np.ndarray) -> list[tuple[int, tuple[slice, ...]]]:
    """(label, bounding box) of every object present."""
    top = int(labels.max())
    if top == 0:
        return []
    if top > 4 * labels.size + 1024:
        # Sparse huge ids: find_objects would allocate one entry per possible id, so number them densely.
        ids, inverse = np.unique(labels, return_inverse=True)
        shift = 0 if ids[0] == 0 else 1  # dense value 0 must be the background
        boxes = ndi.find_objects(inverse.reshape(labels.shape).astype(np.intp) + shift)
        return [(int(ids[k + 1 - shift]), box) for k, box in enumerate(boxes) if box is not None]
    return [(k + 1, box) for k, box in enumerate(ndi.find_objects(labels)) if box is not None]


def _check_workers(workers: int) -> int:
    if not isinstance(workers, (int, np.integer)) or workers == 0 or workers < -1:
        raise BiosegError(f"workers must be a positive integer or -1 (all CPUs); found {workers!r}")
    return (os.cpu_count() or 1) if workers == -1 else int(workers)


def _two_nearest(
    labels: np.ndarray,
    objects: list[tuple[int, tuple[slice, ...]]],
    margins: list[int],
    sampling: tuple[float, ...],
) -> tuple[np.ndarray, np.ndarray]:
    """Running two smallest distances to ``objects``, each transform done in the object's box grown by
    ``margins``; ``inf`` where fewer objects are near."""
    first_all = np.full(labels.shape, np.inf)
    second_all = np.full(labels.shape, np.inf)
    for label, box in objects:
        window = tuple(
            slice(max(0, sl.start - m), min(n, sl.stop + m))
            for sl, m, n in zip(box, margins, labels.shape, strict=True)
        )
        dist = ndi.distance_transform_edt(labels[window] != label, sampling=sampling)
        first, second = first_all[window], second_all[window]  # views: updated in place
        # Running two smallest: the new second is min(second, max(first, dist)).
        np.minimum(second, np.maximum(first, dist), out=second)
        np.minimum(first, dist, out=first)
    return first_all, second_all


def _merge_two_nearest(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The two smallest over several ``(first, second)`` pairs, merged into the first pair in place."""
    d1, d2 = parts[0]
    for a1, a2 in parts[1:]:
        np.minimum(d2, a2, out=d2)
        np.minimum(d2, np.maximum(d1, a1), out=d2)
        np.minimum(d1, a1, out=d1)
    return d1, d2


def object_distances(
    labels: np.ndarray,
    *,
    max_distance: float = math.inf,
    spacing: float | Sequence[float] | None = None,
    workers: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Distances to the nearest and the second nearest object, ``(d1, d2)``, each ``(*spatial)`` float64.

    ``d_i(x)`` is the Euclidean distance (in units of ``spacing``) from ``x`` to the closest pixel of
    object ``i``, 0 inside it; ``d1``/``d2`` are the smallest and second smallest ``d_i(x)`` over objects
    (equal where two objects are equally near). Values above ``max_distance`` are returned as ``inf``, as
    is ``d2`` everywhere when there are fewer than two objects, and ``d1`` too when there is none.

    Each object's distance transform runs only in its bounding box grown by ``max_distance`` (every pixel
    within that distance lies inside), so the cost is about ``objects × window`` and every finite value
    is exact. ``workers`` threads each take a share of the objects (scipy and numpy release the GIL);
    -1: all CPUs. Memory: two float64 images per worker.
    """
    labels = _check_labels(labels)
    sampling = _check_spacing(spacing, labels.ndim)
    workers = _check_workers(workers)
    if not max_distance > 0:
        raise BiosegError(f"max_distance must be > 0 (or inf for no truncation); found {max_distance!r}")
    margins = [
        n if math.isinf(max_distance) else min(n, math.ceil(max_distance / s))
        for n, s in zip(labels.shape, sampling, strict=True)
    ]
    objects = _object_slices(labels)
    workers = max(1, min(workers, len(objects)))
    if workers == 1:
        d1, d2 = _two_nearest(labels, objects, margins, sampling)
    else:
        # Each thread keeps its own two-smallest arrays (scipy and numpy release the GIL); merged after.
        with ThreadPoolExecutor(workers) as pool:
            share = partial(_two_nearest, labels, margins=margins, sampling=sampling)
            parts = list(pool.map(share, [objects[k::workers] for k in range(workers)]))
        d1, d2 = _merge_two_nearest(parts)
    if not math.isinf(max_distance):
        # Pixels can hold values above max_distance from windows they happen to lie in: drop those.
        d1[d1 > max_distance] = np.inf
        d2[d2 > max_distance] = np.inf
    return d1, d2


# --- the U-Net weight map ----------------------------------------------------------------------------


def default_max_distance(sigma: float) -> float:
    """Truncation of ``d1 + d2`` for :func:`unet_weight_map`: beyond it the w0 term is < 1e-4 · w0.

    ``exp(-D² / 2σ²) = 1e-4`` gives ``D = σ · sqrt(2 ln 1e4) ≈ 4.29 σ``.
    """
    return float(sigma) * math.sqrt(2.0 * math.log(1.0 / _TRUNCATION_FRACTION))


def unet_weight_map(
    labels: np.ndarray,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_balance: bool = True,
    class_mask: np.ndarray | None = None,
    edge_mask: np.ndarray | None = None,
    max_distance: float | None = None,
    spacing: float | Sequence[float] | None = None,
    workers: int = 1,
) -> np.ndarray:
    """U-Net pixel weights ``w = w_c + w0 · exp(-(d1 + d2)² / (2σ²))``, ``(*spatial)`` float32.

    Args:
        labels: instance labels ``(*spatial)``, 0 = background.
        w0: weight of the separation term (pixels between nearby objects).
        sigma: decay of the separation term, in units of ``spacing``.
        class_balance: ``w_c`` from :func:`class_balance_weights` (mean 1); otherwise ``w_c = 1``.
        class_mask: the classes that ``class_balance`` balances, ``(*spatial)``; default ``labels > 0``.
            Pass the training target (e.g. ``boundary_target(labels)``) to balance boundary against the rest.
        edge_mask: where the separation term applies, ``(*spatial)`` (non-zero = applies), e.g. the
            boundary target or ``labels == 0``. Elsewhere the weight is ``w_c``, never 0.
        max_distance: truncation of ``d1 + d2`` (units of ``spacing``): the separation term is 0 beyond,
            exact within. Default :func:`default_max_distance` (``≈ 4.29 σ``; the term there is
            ``1e-4 · w0``); ``math.inf`` for none (slow: every object's transform spans the image).
        spacing: voxel size per axis (or one number) for anisotropic distances; default 1.
        workers: threads for the per-object distance transforms; -1: all CPUs.

    ``d1``/``d2`` (see :func:`object_distances`) are 0 / the distance to the nearest other object inside
    an object, so pixels on both sides of a contact between touching objects get ``≈ w_c + w0``. With
    fewer than two objects, ``d2`` is undefined and the separation term is 0: ``w = w_c``.
    """
    labels = _check_labels(labels)
    if not sigma > 0:
        raise BiosegError(f"sigma must be > 0; found {sigma!r}")
    if not w0 >= 0:
        raise BiosegError(f"w0 must be >= 0; found {w0!r}")
    if max_distance is None:
        max_distance = default_max_distance(sigma)
    workers = _check_workers(workers)

    weights = _class_weights(labels, class_balance, class_mask)
    if w0 == 0:
        return weights
    edge = None if edge_mask is None else _check_mask(edge_mask, labels.shape, "edge_mask") != 0
    weights += _separation_term(labels, w0, sigma, max_distance, edge, spacing, workers)
    return weights


def _class_weights(labels: np.ndarray, class_balance: bool, class_mask: np.ndarray | None) -> np.ndarray:
    """``w_c`` of :func:`unet_weight_map`: balanced classes of ``class_mask`` (default foreground vs
    background), or 1 everywhere."""
    if not class_balance:
        return np.ones(labels.shape, dtype=np.float32)
    classes = labels != 0 if class_mask is None else _check_mask(class_mask, labels.shape, "class_mask")
    return class_balance_weights(classes)


def _separation_term(
    labels: np.ndarray,
    w0: float,
    sigma: float,
    max_distance: float,
    edge: np.ndarray | None,
    spacing: float | Sequence[float] | None,
    workers: int,
) -> np.ndarray:
    """``w0 · exp(-(d1 + d2)² / (2σ²))``, 0 beyond ``max_distance`` and outside ``edge``; computed in the
    buffers of ``d1``/``d2`` to keep the memory at two images."""
    d1, d2 = object_distances(labels, max_distance=max_distance, spacing=spacing, workers=workers)
    total = np.add(d1, d2, out=d1)  # inf where truncated or undefined
    term = np.square(total, out=d2)
    term *= -1.0 / (2.0 * sigma * sigma)
    np.exp(term, out=term)  # exp(-inf) = 0
    term[total > max_distance] = 0.0
    if edge is not None:
        term[~edge] = 0.0
    term *= w0
    return term
