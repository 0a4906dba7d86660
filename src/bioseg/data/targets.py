"""Training targets from instance labels: boundaries, foreground + boundary, 3 classes, weight maps.

All functions take an instance label image ``(*spatial)`` (0 = background, 1..n = objects, any number of
dimensions) and return numpy arrays; nothing here loops over pixels in Python.

The U-Net weight map (Ronneberger et al. 2015) is

    w(x) = w_c(x) + w0 · exp(-(d1(x) + d2(x))² / (2σ²))

with ``d1``/``d2`` the distances from ``x`` to the nearest and second nearest object (0 inside an object
for its own object). ``d1``/``d2`` come from one Euclidean distance transform per object, computed only in
the object's bounding box grown by ``max_distance``: every pixel within ``max_distance`` of the object lies
in that window, so the result is exact wherever ``d1 + d2 <= max_distance``, and the cost grows with the
number of objects times the window size, never with objects × image size.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage as ndi

from bioseg.errors import BiosegError

_MODES = ("thick", "inner", "outer")
# Default truncation: beyond it the w0 term is below this fraction of w0.
_TRUNCATION_FRACTION = 1e-4


# --- input checks -------------------------------------------------------------------------------------


def _check_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim < 1 or labels.size == 0:
        raise BiosegError(f"{name} must be a non-empty image (*spatial); found shape {labels.shape}")
    if labels.dtype == bool:
        return labels.view(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise BiosegError(
            f"{name} must be an integer instance image (0 = background, 1..n = objects); found dtype "
            f"{labels.dtype}: convert whole-number values with labels.astype(np.int32)"
        )
    if np.issubdtype(labels.dtype, np.signedinteger) and labels.min() < 0:
        raise BiosegError(
            f"{name} has negative values (min {labels.min()}); expected 0 = background and 1..n = objects: "
            "relabel, e.g. with skimage.segmentation.relabel_sequential"
        )
    return labels


def _check_connectivity(connectivity: int, ndim: int) -> None:
    if not isinstance(connectivity, (int, np.integer)) or not 1 <= connectivity <= ndim:
        raise BiosegError(
            f"connectivity must be an integer in 1..{ndim} for a {ndim}D image; found {connectivity!r} "
            "(1: faces only, 2: faces and edges, ...)"
        )


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


# --- boundaries ---------------------------------------------------------------------------------------


def _half_offsets(ndim: int) -> list[tuple[tuple[int, ...], int]]:
    """Neighbour offsets with their first non-zero entry positive (each pair once), with their order.

    The order (number of non-zero entries) says which connectivity includes the offset.
    """
    out = []
    for offset in itertools.product((-1, 0, 1), repeat=ndim):
        nonzero = [o for o in offset if o != 0]
        if nonzero and nonzero[0] > 0:
            out.append((offset, len(nonzero)))
    return out


def _pair_slices(offset: tuple[int, ...]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices ``a``, ``b``: ``x[b]`` is the neighbour at ``offset`` of ``x[a]`` (both inside the image)."""
    a = tuple(slice(0, -1) if o > 0 else slice(1, None) if o < 0 else slice(None) for o in offset)
    b = tuple(slice(1, None) if o > 0 else slice(0, -1) if o < 0 else slice(None) for o in offset)
    return a, b


def boundary_target(labels: np.ndarray, *, connectivity: int = 1, mode: str = "thick", width: int = 1) -> np.ndarray:
    """Pixels on the border between an object and the background or another object, as uint8 0/1.

    Same result as ``skimage.segmentation.find_boundaries(labels, connectivity, mode)`` for ``width=1``
    (pixels outside the image are not neighbours, so the image border is no boundary), computed with
    one vectorised comparison per neighbour offset.

    Args:
        labels: instance labels ``(*spatial)``, 0 = background; a bool mask is one object class.
        connectivity: neighbours that count, 1 (faces) .. ndim (all ``3**ndim - 1``).
        mode: ``"thick"``: both sides of every border; ``"inner"``: only pixels inside objects;
            ``"outer"``: only background pixels, plus both sides where two objects touch (there is no
            outside there), as scikit-image does.
        width: border thickness in pixels on each side. ``width=w`` marks the pixels within ``w``
            connectivity steps of a pixel with another label (thick), restricted to objects (inner), or
            to the background plus the object pixels within ``w - 1`` steps of a contact (outer).

    Returns:
        uint8 array ``(*spatial)``, 1 on boundaries.
    """
    labels = _check_labels(labels)
    ndim = labels.ndim
    _check_connectivity(connectivity, ndim)
    if mode not in _MODES:
        raise BiosegError(f"unknown boundary mode {mode!r}; valid: {', '.join(_MODES)}")
    if not isinstance(width, (int, np.integer)) or width < 1:
        raise BiosegError(f"boundary width must be an integer >= 1 (pixels per side); found {width!r}")

    edge = np.zeros(labels.shape, dtype=bool)
    contact = np.zeros(labels.shape, dtype=bool) if mode == "outer" else None
    for offset, order in _half_offsets(ndim):
        a, b = _pair_slices(offset)
        la, lb = labels[a], labels[b]
        differ = la != lb
        if order <= connectivity:
            edge[a] |= differ
            edge[b] |= differ
        if contact is not None:
            # Two different objects in full connectivity, whatever `connectivity` is (as scikit-image).
            touching = differ & (la != 0) & (lb != 0)
            contact[a] |= touching
            contact[b] |= touching

    if width > 1:
        structure = ndi.generate_binary_structure(ndim, connectivity)
        edge = ndi.binary_dilation(edge, structure, iterations=width - 1)
        if contact is not None:
            contact = ndi.binary_dilation(contact, structure, iterations=width - 1)
    if mode == "inner":
        edge &= labels != 0
    elif mode == "outer":
        background = labels == 0
        edge &= background | contact
    return edge.view(np.uint8)


def foreground_boundary_target(labels: np.ndarray, **boundary_kwargs: object) -> np.ndarray:
    """Two channels ``(2, *spatial)`` uint8: 0 = foreground (``labels > 0``), 1 = ``boundary_target``.

    ``boundary_kwargs`` (connectivity, mode, width) go to :func:`boundary_target`.
    """
    labels = _check_labels(labels)
    out = np.empty((2, *labels.shape), dtype=np.uint8)
    out[0] = labels != 0
    out[1] = boundary_target(labels, **boundary_kwargs)
    return out


def three_class_target(labels: np.ndarray, *, connectivity: int = 1, mode: str = "inner", width: int = 1) -> np.ndarray:
    """Class indices ``(*spatial)`` uint8: 0 = background, 1 = object interior, 2 = boundary.

    Boundaries (see :func:`boundary_target`) win over both other classes. The default ``mode="inner"``
    keeps every boundary pixel inside an object, so the background class is untouched; with ``"thick"``
    or ``"outer"`` background pixels along objects become boundary too (wider gaps between objects).
    """
    labels = _check_labels(labels)
    out = (labels != 0).astype(np.uint8)
    out[boundary_target(labels, connectivity=connectivity, mode=mode, width=width).view(bool)] = 2
    return out


# --- class balance ------------------------------------------------------------------------------------


def class_balance_weights(mask: np.ndarray) -> np.ndarray:
    """Inverse class frequency per pixel, ``(*spatial)`` float32, normalised to mean 1.

    Every distinct value of ``mask`` is a class. With ``n_c`` pixels of class ``c``, ``C`` classes present
    and ``N`` pixels, ``w_c = N / (C · n_c)``: each class carries the same total weight, and a mask with a
    single class gets weight 1 everywhere.
    """
    mask = np.asarray(mask)
    if mask.size == 0:
        return np.zeros(mask.shape, dtype=np.float32)
    flat = mask.reshape(-1)
    if flat.dtype == bool:
        flat = flat.view(np.uint8)
    if np.issubdtype(flat.dtype, np.integer) and flat.min() >= 0 and flat.max() < 1 << 16:
        index = flat
        counts = np.bincount(flat)  # fast path for class masks; absent classes have count 0
    else:
        _, index, counts = np.unique(flat, return_inverse=True, return_counts=True)
    present = counts > 0
    table = np.zeros(counts.shape, dtype=np.float64)
    table[present] = flat.size / (present.sum() * counts[present])
    return table.astype(np.float32)[index].reshape(mask.shape)


# --- distances to the two nearest objects and the U-Net weight map -----------------------------------


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

    def accumulate(chunk: list[tuple[int, tuple[slice, ...]]]) -> tuple[np.ndarray, np.ndarray]:
        first_all = np.full(labels.shape, np.inf)
        second_all = np.full(labels.shape, np.inf)
        for label, box in chunk:
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

    workers = max(1, min(workers, len(objects)))
    if workers == 1:
        d1, d2 = accumulate(objects)
    else:
        # Each thread keeps its own two-smallest arrays (scipy and numpy release the GIL); merged after.
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(accumulate, [objects[k::workers] for k in range(workers)]))
        d1, d2 = parts[0]
        for a1, a2 in parts[1:]:
            np.minimum(d2, a2, out=d2)
            np.minimum(d2, np.maximum(d1, a1), out=d2)
            np.minimum(d1, a1, out=d1)
    if not math.isinf(max_distance):
        # Pixels can hold values above max_distance from windows they happen to lie in: drop those.
        d1[d1 > max_distance] = np.inf
        d2[d2 > max_distance] = np.inf
    return d1, d2


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

    if class_balance:
        classes = labels != 0 if class_mask is None else _check_mask(class_mask, labels.shape, "class_mask")
        weights = class_balance_weights(classes)
    else:
        weights = np.ones(labels.shape, dtype=np.float32)
    if w0 == 0:
        return weights

    edge = None if edge_mask is None else _check_mask(edge_mask, labels.shape, "edge_mask") != 0
    d1, d2 = object_distances(labels, max_distance=max_distance, spacing=spacing, workers=workers)
    total = np.add(d1, d2, out=d1)  # inf where truncated or undefined
    term = np.square(total, out=d2)
    term *= -1.0 / (2.0 * sigma * sigma)
    np.exp(term, out=term)  # exp(-inf) = 0
    term[total > max_distance] = 0.0
    if edge is not None:
        term[~edge] = 0.0
    term *= w0
    weights += term
    return weights
