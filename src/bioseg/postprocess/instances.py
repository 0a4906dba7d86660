"""From predicted probability maps to instance labels, 2D and 3D alike.

:func:`boundaries_to_instances` turns a boundary probability map into cells: threshold → distance
transform of the non-boundary region → smoothed → seeds → watershed of the boundary map → superpixels →
region adjacency graph → agglomeration → size filter → labels 1..N. :func:`foreground_to_instances`
turns a foreground probability map into objects: connected components, or a watershed of their distance
transform, from the same seeds, that splits touching objects. Both take their options as one
:class:`bioseg.config.InstanceConfig` (``post.instances``). The steps live in :mod:`.watershed` and
:mod:`.agglomeration`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from bioseg.config.instances import InstanceConfig, unused_message
from bioseg.config.lengths import relative_spacing
from bioseg.errors import BiosegError
from bioseg.postprocess import agglomeration as agg
from bioseg.postprocess import watershed as ws


class _Clock:
    """Seconds per named step into ``timings`` (when given)."""

    def __init__(self, timings: dict | None) -> None:
        self.timings = timings

    @contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        if self.timings is not None:
            self.timings[step] = self.timings.get(step, 0.0) + time.perf_counter() - start


def _check_map(name: str, prob: np.ndarray) -> np.ndarray:
    prob = np.asarray(prob)
    if prob.ndim not in (2, 3):
        raise BiosegError(
            f"{name} has shape {prob.shape}; expected (*spatial) 2D (Y, X) or 3D (Z, Y, X) — "
            f"select one channel first, e.g. prob[0] for (C, *spatial)"
        )
    if not np.issubdtype(prob.dtype, np.floating):
        prob = prob.astype(np.float32)
    lo, hi = (float(prob.min()), float(prob.max())) if prob.size else (0.0, 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise BiosegError(f"{name} contains NaN or inf; expected probabilities in [0, 1]")
    if lo < 0.0 or hi > 1.0:
        raise BiosegError(
            f"{name} has values in [{lo:.3g}, {hi:.3g}]; expected probabilities in [0, 1] — "
            f"apply a sigmoid/softmax to logits, or divide an 8-bit map by 255"
        )
    return prob.astype(np.float32, copy=False)


def _check_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise BiosegError(f"mask has shape {mask.shape} but the probability map has {shape}; they must match")
    return mask.astype(bool, copy=False)


def _check_params(params: InstanceConfig | None, mode: str) -> InstanceConfig:
    """``params`` (None: the defaults), refused when it sets an option that ``mode`` would ignore."""
    if params is None:
        return InstanceConfig()
    if not isinstance(params, InstanceConfig):
        raise BiosegError(
            f"params must be a bioseg.config.InstanceConfig, got {type(params).__name__}; "
            "build one with InstanceConfig(threshold=..., ...)"
        )
    unused = params.unused_by(mode)
    if unused:
        raise BiosegError(unused_message(unused, mode, params.foreground_method))
    return params


@dataclass(frozen=True)
class _Geometry:
    """The voxel grid the seeds are found on: ``spacing`` relative to the finest axis (distances come out
    in voxels of the finest axis), and the voxel size ``known`` (None where none is), which lengths in
    micrometres are converted with."""

    spacing: tuple[float, ...]
    known: tuple[float, ...] | None


def _geometry(spacing: Sequence[float] | None, ndim: int) -> _Geometry:
    checked = ws.check_spacing(spacing, ndim)
    return _Geometry(relative_spacing(checked), None if spacing is None else checked)


def _seeds(dist: np.ndarray, params: InstanceConfig, grid: _Geometry, clock: _Clock) -> np.ndarray:
    """Markers in the distance map ``dist`` (voxels of the finest axis), smoothed by ``sigma_seeds``: at
    its h-maxima or at peaks ``min_distance`` apart. The one seeding of both modes."""
    with clock("smooth"):
        smoothed = ws.smooth(dist, params.in_voxels("sigma_seeds", grid.known), grid.spacing)
    with clock("seeds"):
        if params.seed_method == "h_maxima":
            return ws.h_maxima_seeds(smoothed, params.in_voxels("h", grid.known))
        return ws.min_distance_seeds(smoothed, max(1, round(params.in_voxels("min_distance", grid.known))))


def _merge_superpixels(superpixels: np.ndarray, prob: np.ndarray, params: InstanceConfig, clock: _Clock) -> np.ndarray:
    """Mapping superpixel → object (0: removed): the region graph, its agglomeration, the size filter."""
    with clock("graph"):
        graph = agg.region_graph(superpixels, prob)
        sizes = np.bincount(superpixels.ravel(), minlength=graph.n_nodes + 1)
    with clock("agglomeration"):
        if params.agglomeration == "average":
            mapping = agg.average_agglomeration(graph, params.merge_threshold)
        elif params.agglomeration == "multicut":
            costs = agg.multicut_costs(graph, params.beta, params.weight_by_size)
            mapping = agg.gaec(graph, costs)
        else:
            mapping = np.arange(graph.n_nodes + 1, dtype=np.int64)
    with clock("size_filter"):
        if params.min_size > 0 or params.max_size is not None:
            merged = agg.contract(graph, mapping)
            merged_sizes = np.bincount(mapping, weights=sizes, minlength=merged.n_nodes + 1).astype(np.int64)
            mapping = agg.size_filter(merged, merged_sizes, params.min_size, params.max_size, params.small_objects)[
                mapping
            ]
    return mapping


def boundaries_to_instances(
    boundary_prob: np.ndarray,
    params: InstanceConfig | None = None,
    *,
    spacing: Sequence[float] | None = None,
    mask: np.ndarray | None = None,
    timings: dict | None = None,
) -> np.ndarray:
    """Cells from a boundary probability map: ``(*spatial)`` float in [0, 1] → int32 labels 0..N.

    1. ``boundary_prob > threshold`` is boundary; the rest of ``mask`` (everything without mask) is the
       cell region.
    2. Distance transform of the cell region in voxels of the finest axis (anisotropy from ``spacing``,
       the voxel size per axis; None: isotropic), smoothed by ``sigma_seeds``; seeds at its h-maxima or
       at peaks ``min_distance`` apart. Lengths are voxels of the finest axis, or micrometres when
       written so (``h="0.5 um"``, which needs ``spacing``).
    3. Watershed of ``boundary_prob`` from the seeds inside ``mask`` → superpixels.
    4. Region adjacency graph weighted by the mean boundary probability along each contact (each
       touching voxel pair counts with the larger of its two values, i.e. the ridge value);
       agglomeration (``average``, ``multicut`` or ``none``).
    5. Objects smaller than ``min_size`` merge into their neighbour with the most contact (or are
       removed, ``small_objects="remove"``), objects larger than ``max_size`` are removed; labels are
       renumbered 1..N.

    ``params`` (:class:`~bioseg.config.InstanceConfig`, None: its defaults) holds the options; one that
    only the foreground mode reads is refused. With a mask, the distance transform also measures the
    distance to the mask's edge; an image with neither boundary voxels nor mask is one object.
    ``timings``, if given, receives the seconds of each step (``distance``, ``smooth``, ``seeds``,
    ``watershed``, ``graph``, ``agglomeration``, ``size_filter``, ``relabel``).
    """
    params = _check_params(params, "boundary")
    clock = _Clock(timings)
    prob = _check_map("boundary_prob", boundary_prob)
    mask = _check_mask(mask, prob.shape)
    grid = _geometry(spacing, prob.ndim)

    with clock("distance"):
        region = prob <= params.threshold
        if mask is not None:
            region &= mask
        if not region.any():
            return np.zeros(prob.shape, np.int32)
        if region.all():
            # No boundary and no mask edge to measure a distance from: the whole image is one object.
            return np.ones(prob.shape, np.int32)
        dist = ws.distance_transform(region, grid.spacing)
        del region
    seeds = _seeds(dist, params, grid, clock)
    del dist
    with clock("watershed"):
        superpixels = ws.watershed(prob, seeds, mask=mask, value_range=(0.0, 1.0))
        del seeds
    mapping = _merge_superpixels(superpixels, prob, params, clock)
    with clock("relabel"):
        lut = agg.sequential(mapping).astype(np.int32)
        labels = lut[superpixels]
    return labels


def _split_touching(foreground: np.ndarray, params: InstanceConfig, grid: _Geometry, clock: _Clock) -> np.ndarray:
    """Watershed of the negated distance transform of ``foreground`` from the seeds of :func:`_seeds`;
    a component that holds no seed (too small or flat) stays whole. int32 labels, maybe with gaps."""
    components, n = ndi.label(foreground)
    with clock("distance"):
        dist = ws.distance_transform(foreground, grid.spacing)
    markers = _seeds(dist, params, grid, clock)
    with clock("watershed"):
        seeded = np.zeros(n + 1, bool)
        seeded[components[(markers > 0) & foreground]] = True
        unseeded = ~seeded[components] & foreground
        if unseeded.any():
            extra, _ = ndi.label(unseeded)
            markers = np.where(unseeded, extra + markers.max(), markers).astype(np.int32)
        # the raw distance, not the smoothed one, so that the cuts follow the objects' real necks
        finite_max = float(dist[foreground].max())
        return ws.watershed(-dist, markers, mask=foreground, value_range=(-finite_max, 0.0))


def _filter_sizes(labels: np.ndarray, prob: np.ndarray, params: InstanceConfig) -> np.ndarray:
    """Objects below ``min_size`` merged into the neighbour they touch most (removed when they touch
    none) or removed, objects above ``max_size`` removed; labels renumbered 1..N (int32)."""
    sizes = np.bincount(labels.ravel())
    if params.min_size > 0 and params.small_objects == "merge":
        graph = agg.region_graph(labels, prob)
        mapping = agg.size_filter(graph, sizes, params.min_size, params.max_size, "merge")
    else:
        keep = sizes >= max(params.min_size, 1)
        if params.max_size is not None:
            keep &= sizes <= params.max_size
        mapping = np.where(keep, np.arange(sizes.size), 0)
    mapping[0] = 0
    return agg.sequential(mapping).astype(np.int32)[labels]


def foreground_to_instances(
    fg_prob: np.ndarray,
    params: InstanceConfig | None = None,
    *,
    spacing: Sequence[float] | None = None,
    timings: dict | None = None,
) -> np.ndarray:
    """Objects from a foreground probability map: ``(*spatial)`` float in [0, 1] → int32 labels 0..N.

    ``fg_prob > threshold`` is foreground. ``foreground_method="components"``: its face-connected
    components. ``"watershed"``: touching objects are split by a watershed of the negated distance
    transform (voxels of the finest axis, anisotropy from ``spacing``) from the seeds the boundary
    mode uses (``seed_method``, ``h``, ``min_distance``, ``sigma_seeds``); a component without a seed
    stays whole. Then ``min_size`` / ``small_objects`` / ``max_size`` as in
    :func:`boundaries_to_instances`; labels are renumbered 1..N.

    ``params`` (:class:`~bioseg.config.InstanceConfig`, None: its defaults) holds the options; one that
    only the boundary mode reads (agglomeration, merge_threshold, beta, weight_by_size, boundary_head),
    or a seed option with ``components``, is refused. ``timings``, if given, receives the seconds of
    each step (``distance``, ``smooth``, ``seeds``, ``watershed``, ``size_filter``).
    """
    params = _check_params(params, "foreground")
    clock = _Clock(timings)
    prob = _check_map("fg_prob", fg_prob)
    foreground = prob > params.threshold
    if params.foreground_method == "components" or foreground.all() or not foreground.any():
        labels = ndi.label(foreground)[0].astype(np.int32)
    else:
        labels = _split_touching(foreground, params, _geometry(spacing, prob.ndim), clock)
    with clock("size_filter"):
        return _filter_sizes(labels, prob, params)
