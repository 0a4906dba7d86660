"""Distance transform, seeds and a marker watershed for ``(*spatial)`` numpy arrays, 2D and 3D alike.

These are the pixel-level steps of :func:`bioseg.postprocess.instances.boundaries_to_instances`. Each is
a pure function and matches a scikit-image / SciPy reference (checked in ``tests/test_instances.py``)
while being several times faster on large stacks:

- :func:`distance_transform` equals ``scipy.ndimage.distance_transform_edt(region, sampling=spacing)``;
  for stacks of few slices it runs SciPy per slice and adds the slice axis by a short exact pass.
- :func:`h_maxima_seeds` marks the same peaks as ``skimage.morphology.h_maxima``, deciding each local
  maximum in a small window around it instead of reconstructing the whole image.
- :func:`watershed` floods from markers with a bucket queue in vectorised numpy (image quantised to
  255 levels); on the quantised image it agrees with ``skimage.segmentation.watershed`` except where
  two floods tie.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from bioseg.errors import BiosegError

# Quantisation of the watershed image: levels 0..254 are values, 255 marks voxels that cannot be flooded.
_LEVELS = 255
_BLOCKED = np.uint8(255)
# The slice-wise distance transform pays one pass over the stack per slice offset it has to look at;
# beyond this many offsets SciPy's n-d transform is cheaper.
_MAX_SLICE_OFFSETS = 24


def check_spacing(spacing: Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    """``spacing`` as a tuple of ``ndim`` positive floats (``None`` → all 1)."""
    if spacing is None:
        return (1.0,) * ndim
    try:
        values = tuple(float(s) for s in spacing)
    except TypeError as err:
        raise BiosegError(f"spacing must be a sequence of {ndim} numbers, got {spacing!r}") from err
    if len(values) != ndim or not all(np.isfinite(v) and v > 0 for v in values):
        raise BiosegError(
            f"spacing {spacing!r} does not fit a {ndim}D image: give {ndim} positive voxel sizes, "
            f"in axis order ({'z, y, x' if ndim == 3 else 'y, x'}), or None for isotropic voxels"
        )
    return values


# --- distance transform ---------------------------------------------------------------------------


def _squared_edt(region: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Squared Euclidean distance to the nearest False voxel, float32, from SciPy's feature transform.

    Computing the distances from the nearest-voxel indices ourselves (float32, broadcast coordinates)
    costs about half of what ``distance_transform_edt`` spends on it in float64.
    """
    nearest = ndi.distance_transform_edt(region, sampling=spacing, return_distances=False, return_indices=True)
    d2 = np.zeros(region.shape, np.float32)
    for axis, step in enumerate(spacing):
        shape = [1] * region.ndim
        shape[axis] = -1
        coords = np.arange(region.shape[axis], dtype=np.int32).reshape(shape)
        diff = (nearest[axis] - coords).astype(np.float32)
        diff *= np.float32(step)
        diff *= diff
        d2 += diff
    return d2


def distance_transform(region: np.ndarray, spacing: Sequence[float] | None = None) -> np.ndarray:
    """Euclidean distance of every True voxel of ``region`` to the nearest False voxel, in units of
    ``spacing`` (False voxels: 0). ``(*spatial)`` bool → float32. Voxels outside the array do not count
    as False; a region without any False voxel has no finite distance and gives +inf everywhere.

    Same values as ``scipy.ndimage.distance_transform_edt(region, sampling=spacing)``. For 3D stacks
    the in-plane transform runs per slice and the slice axis is added by the exact lower envelope
    ``min_k d²(z + k) + (k·s_z)²``, stopping once ``(k·s_z)²`` exceeds every remaining distance: with
    few or thick slices that is a handful of passes, three to four times faster than the n-d transform.
    """
    region = np.asarray(region, dtype=bool)
    spacing = check_spacing(spacing, region.ndim)
    if region.all():
        return np.full(region.shape, np.inf, np.float32)
    if region.ndim != 3 or region.shape[0] < 2:
        return np.sqrt(_squared_edt(region, spacing))

    slice_has_background = ~region.reshape(region.shape[0], -1).all(axis=1)
    if not slice_has_background.all():
        # A slice without background has no finite in-plane distance; the n-d transform handles it.
        return np.sqrt(_squared_edt(region, spacing))
    planar = np.empty(region.shape, np.float32)
    for z in range(region.shape[0]):
        planar[z] = _squared_edt(region[z], spacing[1:])
    step2 = spacing[0] ** 2
    largest = float(planar.max())
    if min(region.shape[0] - 1, int(np.ceil(np.sqrt(largest / step2)))) > _MAX_SLICE_OFFSETS:
        return np.sqrt(_squared_edt(region, spacing))
    d2 = planar.copy()
    k = 1
    while k < region.shape[0] and k * k * step2 < largest:
        offset = np.float32(k * k * step2)
        np.minimum(d2[k:], planar[:-k] + offset, out=d2[k:])
        np.minimum(d2[:-k], planar[k:] + offset, out=d2[:-k])
        largest = float(d2.max())
        k += 1
    return np.sqrt(d2, out=d2)


def smooth(image: np.ndarray, sigma: float, spacing: Sequence[float] | None = None) -> np.ndarray:
    """Gaussian smoothing with ``sigma`` in voxels of the finest axis: axis i gets
    ``sigma * min(spacing) / spacing[i]``, so the kernel is round in physical space. float32."""
    spacing = check_spacing(spacing, image.ndim)
    image = np.asarray(image, dtype=np.float32)
    if sigma <= 0:
        return image
    finest = min(spacing)
    return ndi.gaussian_filter(image, [sigma * finest / s for s in spacing], mode="nearest")


# --- seeds ----------------------------------------------------------------------------------------


def _max_filter3(image: np.ndarray) -> np.ndarray:
    """Maximum over the 3×3(×3) neighbourhood, edges as 'nearest': separable, by shifted slices
    (several times faster than ``ndimage.maximum_filter`` on large stacks)."""
    out = image.copy()
    for axis in range(image.ndim):
        if image.shape[axis] < 2:
            continue
        src = out.copy()
        lo = [slice(None)] * image.ndim
        hi = [slice(None)] * image.ndim
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        np.maximum(out[tuple(lo)], src[tuple(hi)], out=out[tuple(lo)])
        np.maximum(out[tuple(hi)], src[tuple(lo)], out=out[tuple(hi)])
    return out


def _local_maxima(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plateaus of voxels ≥ all their neighbours (full connectivity) with value > 0.

    Returns (plateau label image, one flat index per plateau, the plateau values). A plateau found
    this way has one value throughout (two adjacent voxels each ≥ the other are equal).
    """
    footprint = np.ones((3,) * image.ndim, bool)
    candidates = image == _max_filter3(image)
    candidates &= image > 0
    plateaus, n = ndi.label(candidates, structure=footprint)
    if n == 0:
        return plateaus, np.zeros(0, np.int64), np.zeros(0, image.dtype)
    flat = np.flatnonzero(plateaus)
    _, first = np.unique(plateaus.ravel()[flat], return_index=True)
    where = flat[first]
    return plateaus, where, image.ravel()[where]


def _decide_in_windows(
    image: np.ndarray, where: np.ndarray, values: np.ndarray, h: float, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """All maxima at once in windows of ``radius`` around them: (rejected, accepted) bool arrays.

    Rejected: the dome (component of ``image > value - h`` around the maximum, inside the window)
    holds a higher voxel. Accepted: no higher voxel and the dome does not reach the window's edge.
    Neither: decided later with larger windows. One ``ndimage.label`` call labels all windows,
    stacked along a new first axis that the structure does not connect.
    """
    ndim = image.ndim
    size = 2 * radius + 1
    grid = np.indices((size,) * ndim).reshape(ndim, -1) - radius  # (ndim, W)
    coords = np.stack(np.unravel_index(where, image.shape))  # (ndim, n)
    pos = coords[:, :, None] + grid[:, None, :]  # (ndim, n, W)
    valid = np.ones(pos.shape[1:], bool)
    for axis in range(ndim):
        valid &= (pos[axis] >= 0) & (pos[axis] < image.shape[axis])
        np.clip(pos[axis], 0, image.shape[axis] - 1, out=pos[axis])
    windows = image[tuple(pos)].astype(np.float64)
    values = values.astype(np.float64)
    inside = valid & (windows > (values - h)[:, None])
    structure = np.zeros((3,) * (ndim + 1), bool)
    structure[1] = True
    comps, _ = ndi.label(inside.reshape((-1,) + (size,) * ndim), structure=structure)
    comps = comps.reshape(len(where), -1)
    centre = comps[:, grid.shape[1] // 2]
    dome = comps == centre[:, None]
    rejected = (dome & (windows > values[:, None])).any(axis=1)
    edge = (np.abs(grid) == radius).any(axis=0)
    # Window voxels beyond the image are never in a dome, so reaching the edge there is no concern.
    touches = (dome & edge[None, :]).any(axis=1)
    return rejected, ~rejected & ~touches


def _dome_has_no_higher(image: np.ndarray, centre: tuple[int, ...], peak: float, floor: float, radius: int) -> bool:
    """Whether the connected component of ``image > floor`` around ``centre`` (full connectivity) holds
    no voxel above ``peak``. Looks in a window of ``radius`` around ``centre`` that doubles until the
    component either shows a higher voxel or lies inside the window. Comparisons in float64."""
    footprint = np.ones((3,) * image.ndim, bool)
    while True:
        lo = [max(c - radius, 0) for c in centre]
        hi = [min(c + radius + 1, s) for c, s in zip(centre, image.shape, strict=True)]
        window = image[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))].astype(np.float64)
        comps, _ = ndi.label(window > floor, structure=footprint)
        dome = comps == comps[tuple(c - a for c, a in zip(centre, lo, strict=True))]
        if (window[dome] > peak).any():
            return False
        touches = False
        for axis in range(image.ndim):
            face = [slice(None)] * image.ndim
            if lo[axis] > 0:
                face[axis] = 0
                touches |= bool(dome[tuple(face)].any())
            if hi[axis] < image.shape[axis]:
                face[axis] = -1
                touches |= bool(dome[tuple(face)].any())
        if not touches:
            return True
        radius *= 2


def h_maxima_seeds(image: np.ndarray, h: float) -> np.ndarray:
    """Markers at the maxima of ``image`` (≥ 0, e.g. a distance map) whose dynamic is at least ``h``.

    ``(*spatial)`` float → int32 labels 1..n, one per peak plateau, 0 elsewhere. A local maximum of
    value M is kept when no voxel above M can be reached from it without descending to M - h or
    lower (full connectivity) — the peaks ``skimage.morphology.h_maxima(image, h)`` returns. Only
    maxima with value > 0 count. Values are compared exactly: scikit-image also treats values within
    float rounding (2·eps relative) of a peak as part of it, which on float32 maps adds a few seeds
    along flat ridges. Each maximum is decided in a window around it (all at once in small windows,
    then one by one in doubling windows for the few whose dome is larger), so the cost follows the
    number of maxima and the size of their domes, not of the image.
    """
    image = np.asarray(image)
    if h <= 0:
        raise BiosegError(f"h must be > 0, got {h}: it is the minimum height of a peak above its saddle")
    plateaus, where, values = _local_maxima(image)
    markers = np.zeros(image.shape, np.int32)
    if where.size == 0:
        return markers
    values = values.astype(np.float64)
    keep = np.zeros(where.size, bool)
    # A dome that reaches down to 0 covers everything: only the highest peaks survive.
    low = values - h < 0
    keep[low] = values[low] >= float(image.max())
    pending = np.flatnonzero(~low)
    radius = 4 if image.ndim == 3 else 8
    for chunk in np.array_split(pending, max(1, len(pending) // 4096)):
        if chunk.size == 0:
            continue
        rejected, accepted = _decide_in_windows(image, where[chunk], values[chunk], h, radius)
        keep[chunk[accepted]] = True
        for i in chunk[~rejected & ~accepted].tolist():
            centre = tuple(int(c) for c in np.unravel_index(where[i], image.shape))
            keep[i] = _dome_has_no_higher(image, centre, values[i], values[i] - h, 2 * radius)
    lut = np.zeros(where.size + 1, np.int32)
    kept = np.flatnonzero(keep)
    lut[kept + 1] = np.arange(1, kept.size + 1, dtype=np.int32)
    return lut[plateaus]


def min_distance_seeds(image: np.ndarray, min_distance: int) -> np.ndarray:
    """Markers at the peaks of ``image`` (> 0) at least ``min_distance`` voxels apart (Chebyshev), as
    ``skimage.feature.peak_local_max(image, min_distance, exclude_border=False)`` finds them.
    ``(*spatial)`` float → int32 labels 1..n, one voxel each."""
    from skimage.feature import peak_local_max

    if int(min_distance) < 1:
        raise BiosegError(f"min_distance must be ≥ 1 voxel, got {min_distance}")
    image = np.asarray(image)
    markers = np.zeros(image.shape, np.int32)
    if not (image > 0).any():
        return markers
    peaks = peak_local_max(image, min_distance=int(min_distance), threshold_abs=0.0, exclude_border=False)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    return markers


# --- watershed ------------------------------------------------------------------------------------


def quantize(image: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """``image`` mapped linearly onto the levels 0..254 (uint8); ``value_range`` (low, high) defaults
    to the image's min and max."""
    image = np.asarray(image, dtype=np.float32)
    low, high = (float(image.min()), float(image.max())) if value_range is None else value_range
    scale = (_LEVELS - 1) / (high - low) if high > low else 0.0
    # level = round((value - low) * scale), as one multiply, one add (with the 0.5 of rounding), one clip
    out = np.multiply(image, np.float32(scale))
    out += np.float32(0.5 - low * scale)
    np.clip(out, 0, _LEVELS - 0.5, out=out)
    return out.astype(np.uint8)


def _push(buckets: list[list[np.ndarray]], index: np.ndarray, level: np.ndarray) -> None:
    """Append flat indices to the bucket of their level (stable radix sort of uint8 levels)."""
    if index.size == 0:
        return
    low, high = int(level.min()), int(level.max())
    if low == high:
        buckets[low].append(index)
        return
    order = np.argsort(level, kind="stable")
    counts = np.bincount(level, minlength=_LEVELS)
    ends = np.cumsum(counts)
    index = index[order]
    for b in np.flatnonzero(counts).tolist():
        buckets[b].append(index[ends[b] - counts[b] : ends[b]])


def watershed(
    image: np.ndarray,
    markers: np.ndarray,
    mask: np.ndarray | None = None,
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Seeded watershed: every voxel of ``mask`` joins the marker it is flooded from. int32 labels.

    ``image``, ``markers`` (int, 0 = unlabelled) and ``mask`` (bool) are ``(*spatial)``; face
    connectivity. Flooding by a bucket queue over ``image`` quantised to 255 levels (``value_range``
    defaults to the image's min and max): a voxel's priority is the highest level on the path that
    reached it (the image-foresting-transform watershed), and it takes the label of the first flooded
    neighbour, as in ``skimage.segmentation.watershed``. Whole fronts are processed per numpy call,
    which makes it several times faster than scikit-image on large stacks; results differ only where
    two floods tie. Markers outside ``mask`` are ignored; mask voxels no marker reaches stay 0.
    """
    image = np.asarray(image)
    markers = np.asarray(markers)
    if markers.shape != image.shape or (mask is not None and np.shape(mask) != image.shape):
        raise BiosegError(
            f"watershed needs image, markers and mask of one shape; got {image.shape}, {markers.shape}"
            f"{'' if mask is None else f' and {np.shape(mask)}'}"
        )
    levels = image if image.dtype == np.uint8 and value_range is None else quantize(image, value_range)
    inner = (slice(1, -1),) * image.ndim
    level, labels = _padded(levels, markers, mask)
    level_f, labels_f = level.ravel(), labels.ravel()
    strides = np.cumprod((1,) + level.shape[::-1][:-1])[::-1]
    offsets = [int(s) for s in strides] + [-int(s) for s in strides]
    free = labels_f == 0
    free &= level_f != _BLOCKED
    _flood(level_f, labels_f, free, offsets)
    return labels[inner].copy()


def _padded(levels: np.ndarray, markers: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Levels and labels with one blocked voxel of padding on each side, so that neighbour offsets never
    leave the array; voxels outside ``mask`` are blocked too, and markers on blocked voxels dropped."""
    padded = tuple(s + 2 for s in levels.shape)
    inner = (slice(1, -1),) * levels.ndim
    level = np.full(padded, _BLOCKED, np.uint8)
    level[inner] = np.minimum(levels, _LEVELS - 1)
    if mask is not None:
        level[inner][~np.asarray(mask, dtype=bool)] = _BLOCKED
    labels = np.zeros(padded, np.int32)
    labels[inner] = markers
    labels[level == _BLOCKED] = 0
    return level, labels


def _flood(level_f: np.ndarray, labels_f: np.ndarray, free: np.ndarray, offsets: list[int]) -> None:
    """Flood ``labels_f`` in place, level by level, from the marker voxels that touch a free voxel."""
    front = np.zeros(labels_f.size, bool)
    for off in offsets:
        if off > 0:
            front[:-off] |= free[off:]
        else:
            front[-off:] |= free[:off]
    front &= labels_f != 0
    start = np.flatnonzero(front)
    del front
    buckets: list[list[np.ndarray]] = [[] for _ in range(_LEVELS)]
    _push(buckets, start, level_f[start])
    for b in range(_LEVELS):
        while buckets[b]:
            wave = buckets[b][0] if len(buckets[b]) == 1 else np.concatenate(buckets[b])
            buckets[b] = []
            source = labels_f[wave]
            claimed = []
            for off in offsets:
                neighbour = wave + off
                ok = free[neighbour]
                neighbour = neighbour[ok]
                if neighbour.size:
                    # Offsets run one after the other, so a voxel is claimed once (by the first).
                    labels_f[neighbour] = source[ok]
                    free[neighbour] = False
                    claimed.append(neighbour)
            if claimed:
                new = claimed[0] if len(claimed) == 1 else np.concatenate(claimed)
                # Priority of the path: never below the level being flooded.
                _push(buckets, new, np.maximum(level_f[new], np.uint8(b)))
