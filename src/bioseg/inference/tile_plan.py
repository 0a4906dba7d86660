"""Fewer, larger tiles: the tile size that computes each pixel the fewest times.

Tiles of the training patch overlap by a margin (256 px at overlap 0.25: 64 px) and every pixel of the
margin is computed twice or more: a 2048² image in tiles of 256 costs 1.9 times its pixels. A fully
convolutional network predicts a larger tile as well as a small one, so ``infer.patch_size: auto`` keeps
the margin in pixels but makes the tiles as large as one forward pass of a tile batch allows
(``infer.batch_size`` training patches' worth of voxels): memory stays what it was, and the 2048² image
costs 1.3 times its pixels (5 × 5 tiles of 464² in place of 11 × 11 of 256²).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bioseg.config import Experiment


@dataclass(frozen=True)
class TilePlan:
    """What :func:`bioseg.inference.tiling.sliding_window` is called with: the tile size, the overlap of
    each axis (a fraction of that axis' tile) and the tiles per forward pass."""

    patch: tuple[int, ...]
    overlap: tuple[float, ...]
    batch_size: int

    def computed(self, spatial: Sequence[int], divisor: int | Sequence[int] = 1) -> float:
        """Voxels computed per voxel of an image of shape ``spatial`` (1: each once), tiles aligned to
        ``divisor`` as :func:`bioseg.inference.tiling.sliding_window` aligns them."""
        from bioseg.inference.tiling import tile_starts

        divisors = (divisor,) * len(self.patch) if isinstance(divisor, int) else tuple(divisor)
        total = 1
        for size, p, o, d in zip(spatial, self.patch, self.overlap, divisors, strict=True):
            total *= len(tile_starts(max(size, p), p, o, d)) * p
        return total / math.prod(spatial)


def plan_tiles(
    spatial: Sequence[int],
    patch: Sequence[int],
    overlap: float,
    batch_size: int,
    divisor: int | Sequence[int] = 1,
) -> TilePlan:
    """The largest tiles for an image of shape ``spatial`` that hold no more voxels than ``batch_size``
    tiles of ``patch``, overlapping by the margin ``patch`` tiles would have at ``overlap``.

    Every axis starts as one tile over the whole axis (rounded up to ``divisor``, never under ``patch``);
    while the tile holds too many voxels, the axis whose tile is the most times its patch is cut into one
    more tile. The overlap handed on is the margin as a fraction of each axis' tile, a half pixel under,
    so that ``int(tile * (1 - overlap))`` steps by exactly ``tile - margin``.
    """
    patch = tuple(int(p) for p in patch)
    divisors = (divisor,) * len(patch) if isinstance(divisor, int) else tuple(int(d) for d in divisor)
    margins = tuple(p - int(p * (1 - overlap)) for p in patch)
    budget = batch_size * math.prod(patch)
    counts = [1] * len(patch)

    def length(axis: int) -> int:
        size, p, d, m, n = spatial[axis], patch[axis], divisors[axis], margins[axis], counts[axis]
        if size <= p:
            return p
        return max(p, math.ceil(math.ceil((size + (n - 1) * m) / n) / d) * d)

    tile = [length(a) for a in range(len(patch))]
    while math.prod(tile) > budget:
        splittable = [a for a in range(len(patch)) if tile[a] > patch[a]]
        if not splittable:
            break
        axis = max(splittable, key=lambda a: tile[a] / patch[a])
        counts[axis] += 1
        tile[axis] = length(axis)
    overlaps = tuple(max(0.0, (m - 0.5) / t) if m else 0.0 for m, t in zip(margins, tile, strict=True))
    return TilePlan(tuple(tile), overlaps, max(1, budget // math.prod(tile)))


def tile_plan(cfg: Experiment, infer: Any, spatial: Sequence[int], divisor: int | Sequence[int]) -> TilePlan:
    """The tiles for an image of shape ``spatial`` under ``infer`` (an ``InferConfig``): planned by
    :func:`plan_tiles` for ``patch_size: auto``, else the fixed tile (None: the training patch)."""
    if infer.patch_size == "auto":
        return plan_tiles(spatial, cfg.data.patch_size, infer.overlap, infer.batch_size, divisor)
    patch = tuple(cfg.data.patch_size if infer.patch_size is None else infer.patch_size)
    return TilePlan(patch, (infer.overlap,) * len(patch), infer.batch_size)
