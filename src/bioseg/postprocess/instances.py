"""From predicted probability maps to instance labels, 2D and 3D alike.

:func:`boundaries_to_instances` turns a boundary probability map into cells: threshold → distance
transform of the non-boundary region → smoothed → seeds → watershed of the boundary map → superpixels →
region adjacency graph → agglomeration → size filter → labels 1..N. :func:`foreground_to_instances`
turns a foreground probability map into objects: connected components, or a distance watershed that
splits touching objects. The steps live in :mod:`.watershed` and :mod:`.agglomeration`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage as ndi

from bioseg.errors import BiosegError
from bioseg.postprocess import agglomeration as agg
from bioseg.postprocess import watershed as ws
from bioseg.registry import did_you_mean

SEED_METHODS = ("h_maxima", "min_distance")
AGGLOMERATIONS = ("average", "multicut", "none")
SMALL_OBJECTS = ("merge", "remove")


def _choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise BiosegError(f"{name} '{value}' is not one of {', '.join(choices)}." + did_you_mean(str(value), choices))


@dataclass
class InstanceParams:
    """Parameters of :func:`boundaries_to_instances`; each maps one to one onto a config key.

    threshold: boundary probability above which a voxel is boundary; the distance transform measures
        the distance to those voxels.
    seed_method: ``h_maxima`` — maxima of the smoothed distance map that rise at least ``h`` above the
        saddle to any higher maximum (robust to elongated cells); ``min_distance`` — peaks at least
        ``min_distance`` voxels apart.
    h: minimum dynamic of a seed, in units of ``spacing`` (h_maxima).
    min_distance: minimum distance between seeds, in voxels (min_distance).
    sigma_seeds: Gaussian smoothing of the distance map before seeding, in voxels of the finest axis
        (scaled per axis by the spacing); 0 = none.
    agglomeration: how superpixels merge into cells. ``average``: average linkage on the mean boundary
        probability of each contact, merging while it is below ``merge_threshold``; ``multicut``: greedy
        additive edge contraction on costs ``log((1-p)/p) + log((1-beta)/beta)``; ``none``: superpixels.
    merge_threshold: mean boundary probability below which regions merge (average).
    beta: boundary bias of the multicut costs (multicut); above 0.5 → more cuts, below → more merges.
    weight_by_size: multiply each multicut cost by its contact size, so that large contacts weigh more.
    min_size: objects with fewer voxels are merged into the neighbour with which they share the most
        contact (``small_objects="merge"``) or removed (``"remove"``). 0 = keep all.
    max_size: objects with more voxels (after merging) are removed; None = no limit.
    small_objects: ``merge`` or ``remove`` (see min_size); an object with no neighbour is removed.
    spacing: voxel size per axis, e.g. (z, y, x); the distance transform and the smoothing use it.
        None = isotropic.
    """

    threshold: float = 0.5
    seed_method: Literal["h_maxima", "min_distance"] = "h_maxima"
    h: float = 1.0
    min_distance: int = 3
    sigma_seeds: float = 1.0
    agglomeration: Literal["average", "multicut", "none"] = "average"
    merge_threshold: float = 0.5
    beta: float = 0.5
    weight_by_size: bool = True
    min_size: int = 0
    max_size: int | None = None
    small_objects: Literal["merge", "remove"] = "merge"
    spacing: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        _choice("seed_method", self.seed_method, SEED_METHODS)
        _choice("agglomeration", self.agglomeration, AGGLOMERATIONS)
        _choice("small_objects", self.small_objects, SMALL_OBJECTS)
        if not 0.0 < self.threshold < 1.0:
            raise BiosegError(f"threshold must lie strictly between 0 and 1, got {self.threshold}")
        if self.h <= 0:
            raise BiosegError(f"h must be > 0, got {self.h}: it is the height a seed rises above its saddle")
        if int(self.min_distance) < 1:
            raise BiosegError(f"min_distance must be ≥ 1 voxel, got {self.min_distance}")
        if self.sigma_seeds < 0:
            raise BiosegError(f"sigma_seeds must be ≥ 0 (0 = no smoothing), got {self.sigma_seeds}")
        if not 0.0 <= self.merge_threshold <= 1.0:
            raise BiosegError(f"merge_threshold is a probability in [0, 1], got {self.merge_threshold}")
        if not 0.0 < self.beta < 1.0:
            raise BiosegError(f"beta must lie strictly between 0 and 1, got {self.beta}; 0.5 is neutral")
        if self.min_size < 0:
            raise BiosegError(f"min_size must be ≥ 0 voxels, got {self.min_size}")
        if self.max_size is not None and self.max_size < max(self.min_size, 1):
            raise BiosegError(
                f"max_size ({self.max_size}) must be ≥ min_size ({self.min_size}) and ≥ 1, or None for no limit"
            )
        if self.spacing is not None:
            self.spacing = tuple(float(s) for s in self.spacing)


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


def boundaries_to_instances(
    boundary_prob: np.ndarray,
    params: InstanceParams | None = None,
    mask: np.ndarray | None = None,
    timings: dict | None = None,
) -> np.ndarray:
    """Cells from a boundary probability map: ``(*spatial)`` float in [0, 1] → int32 labels 0..N.

    1. ``boundary_prob > threshold`` is boundary; the rest of ``mask`` (everything without mask) is the
       cell region.
    2. Distance transform of the cell region (physical units with ``spacing``), smoothed by
       ``sigma_seeds``; seeds at its h-maxima or at peaks ``min_distance`` apart.
    3. Watershed of ``boundary_prob`` from the seeds inside ``mask`` → superpixels.
    4. Region adjacency graph weighted by the mean boundary probability along each contact (each
       touching voxel pair counts with the larger of its two values, i.e. the ridge value);
       agglomeration (``average``, ``multicut`` or ``none``).
    5. Objects smaller than ``min_size`` merge into their neighbour with the most contact (or are
       removed, ``small_objects="remove"``), objects larger than ``max_size`` are removed; labels are
       renumbered 1..N.

    With a mask, the distance transform also measures the distance to the mask's edge; an image with
    neither boundary voxels nor mask is one object.
    ``timings``, if given, receives the seconds of each step (``distance``, ``smooth``, ``seeds``,
    ``watershed``, ``graph``, ``agglomeration``, ``size_filter``, ``relabel``).
    """
    params = InstanceParams() if params is None else params
    if not isinstance(params, InstanceParams):
        raise BiosegError(f"params must be an InstanceParams, got {type(params).__name__}")
    clock = _Clock(timings)
    prob = _check_map("boundary_prob", boundary_prob)
    mask = _check_mask(mask, prob.shape)
    spacing = ws.check_spacing(params.spacing, prob.ndim)

    with clock("distance"):
        region = prob <= params.threshold
        if mask is not None:
            region &= mask
        if not region.any():
            return np.zeros(prob.shape, np.int32)
        if region.all():
            # No boundary and no mask edge to measure a distance from: the whole image is one object.
            return np.ones(prob.shape, np.int32)
        dist = ws.distance_transform(region, spacing)
        del region
    with clock("smooth"):
        dist = ws.smooth(dist, params.sigma_seeds, spacing)
    with clock("seeds"):
        if params.seed_method == "h_maxima":
            seeds = ws.h_maxima_seeds(dist, params.h)
        else:
            seeds = ws.min_distance_seeds(dist, params.min_distance)
        del dist
    with clock("watershed"):
        superpixels = ws.watershed(prob, seeds, mask=mask, value_range=(0.0, 1.0))
        del seeds
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
    with clock("relabel"):
        lut = agg.sequential(mapping).astype(np.int32)
        labels = lut[superpixels]
    return labels


def _remove_by_size(labels: np.ndarray, min_size: int, max_size: int | None = None) -> np.ndarray:
    """Objects outside [min_size, max_size] set to 0, the rest renumbered 1..N (int32)."""
    sizes = np.bincount(labels.ravel())
    keep = sizes >= max(min_size, 1)
    if max_size is not None:
        keep &= sizes <= max_size
    keep[0] = False
    lut = np.zeros(sizes.size, np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[labels]


def foreground_to_instances(
    fg_prob: np.ndarray,
    threshold: float = 0.5,
    method: Literal["components", "watershed"] = "components",
    min_distance: int = 5,
    spacing: Sequence[float] | None = None,
    min_size: int = 0,
) -> np.ndarray:
    """Objects from a foreground probability map: ``(*spatial)`` float in [0, 1] → int32 labels 0..N.

    ``fg_prob > threshold`` is foreground. ``components``: its face-connected components.
    ``watershed``: touching objects are split by a watershed of the negated distance transform
    (``spacing``-aware) from its peaks at least ``min_distance`` voxels apart; a component without a
    peak stays whole. Objects with fewer than ``min_size`` voxels are removed (set to 0); labels are
    renumbered 1..N.
    """
    _choice("method", method, ("components", "watershed"))
    if not 0.0 <= threshold < 1.0:
        raise BiosegError(f"threshold must lie in [0, 1), got {threshold}")
    if min_size < 0:
        raise BiosegError(f"min_size must be ≥ 0 voxels, got {min_size}")
    prob = _check_map("fg_prob", fg_prob)
    spacing = ws.check_spacing(spacing, prob.ndim)
    foreground = prob > threshold
    components, n = ndi.label(foreground)
    if method == "components" or n == 0 or foreground.all():
        return _remove_by_size(components.astype(np.int32), min_size)
    dist = ws.distance_transform(foreground, spacing)
    markers = ws.min_distance_seeds(dist, min_distance)
    # Components that hold no peak (too small or flat) become a marker of their own.
    seeded = np.zeros(n + 1, bool)
    seeded[components[markers > 0]] = True
    unseeded = ~seeded[components] & foreground
    if unseeded.any():
        extra, _ = ndi.label(unseeded)
        markers = np.where(unseeded, extra + markers.max(), markers).astype(np.int32)
    finite_max = float(dist[foreground].max())
    labels = ws.watershed(-dist, markers, mask=foreground, value_range=(-finite_max, 0.0))
    return _remove_by_size(labels, min_size)
