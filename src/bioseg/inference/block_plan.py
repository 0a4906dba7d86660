"""Where each block of a large image is read, which tiles predict it, and where it is written.

The whole image has one tile grid (:func:`bioseg.inference.tiling.tile_starts` along every axis, as
:func:`~bioseg.inference.tiling.sliding_window` places it). A block is a box of the output (its *core*,
one zarr chunk); it is predicted with every tile of that grid that touches the core, read from the
*region* those tiles span (the core plus a halo of up to one tile). Every tile that covers a core
voxel in the whole-image prediction touches the core, so each core voxel is the same weighted sum over
the same tiles, added in the same order: block-wise equals whole-image prediction, up to the float
rounding of the network on differently batched tiles. An axis shorter than the tile is one block,
padded as the tiler pads it.

The price is the tiles that straddle a block face, predicted once for each block they touch: with
``n`` tiles per block along an axis about ``(n + 1) / n`` times the work along it. Block sizes that
are a multiple of the tile step keep faces at the same place in the grid, so that one tile straddles
each face, never two.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from bioseg.errors import BiosegError
from bioseg.inference.tiling import tile_size, tile_starts


@dataclass(frozen=True)
class Block:
    """One block: ``index`` in the block grid; ``core`` and ``region`` as (start, stop) per spatial axis
    in image voxels; ``pad`` (before, after) per axis added to the region as the tiler pads a short axis;
    ``tiles``: tile origins relative to the padded region, C order; ``crop``: the core inside the
    padded region."""

    index: tuple[int, ...]
    core: tuple[tuple[int, int], ...]
    region: tuple[tuple[int, int], ...]
    pad: tuple[tuple[int, int], ...]
    tiles: tuple[tuple[int, ...], ...]
    crop: tuple[tuple[int, int], ...]

    @property
    def core_slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in self.core)

    @property
    def region_slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in self.region)

    @property
    def crop_slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in self.crop)

    def tile_slices(self, patch: Sequence[int]) -> list[tuple[slice, ...]]:
        return [tuple(slice(o, o + p) for o, p in zip(origin, patch, strict=True)) for origin in self.tiles]


@dataclass(frozen=True)
class BlockPlan:
    """The blocks of an image of ``shape`` (spatial) for tiles of ``patch`` (after the size divisor)."""

    shape: tuple[int, ...]
    patch: tuple[int, ...]
    overlap: float
    block_size: tuple[int, ...]
    #: tile starts are multiples of this per axis (the network's size divisor), as the tiler places them
    align: tuple[int, ...]

    def starts(self, axis: int) -> list[int]:
        """The whole image's tile starts along ``axis`` (as :func:`~bioseg.inference.tiling.sliding_window`)."""
        return tile_starts(self.shape[axis], self.patch[axis], self.overlap, self.align[axis])

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(math.ceil(n / b) for n, b in zip(self.shape, self.block_size, strict=True))

    @property
    def n_blocks(self) -> int:
        return math.prod(self.grid)

    def blocks(self) -> Iterator[Block]:
        for index in itertools.product(*(range(g) for g in self.grid)):
            yield self.block(index)

    def block(self, index: tuple[int, ...]) -> Block:
        core, region, pad, crop, starts = [], [], [], [], []
        for axis, k in enumerate(index):
            n, p, b = self.shape[axis], self.patch[axis], self.block_size[axis]
            lo, hi = k * b, min((k + 1) * b, n)
            core.append((lo, hi))
            if n < p:  # one tile, the whole axis padded up to it
                before = (p - n) // 2
                region.append((0, n))
                pad.append((before, p - n - before))
                crop.append((before + lo, before + hi))
                starts.append([0])
                continue
            touching = [s for s in self.starts(axis) if s < hi and s + p > lo]
            first, last = touching[0], touching[-1] + p
            region.append((first, last))
            pad.append((0, 0))
            crop.append((lo - first, hi - first))
            starts.append([s - first for s in touching])
        tiles = tuple(itertools.product(*starts))
        return Block(tuple(index), tuple(core), tuple(region), tuple(pad), tiles, tuple(crop))

    def tiles_total(self) -> tuple[int, int]:
        """(tiles predicted block-wise, tiles of the whole-image prediction): the straddling overhead."""
        whole = math.prod(1 if n < p else len(self.starts(axis))
                          for axis, (n, p) in enumerate(zip(self.shape, self.patch, strict=True)))  # fmt: skip
        per_axis = []
        for axis, (n, p, b) in enumerate(zip(self.shape, self.patch, self.block_size, strict=True)):
            if n < p:
                per_axis.append(1)
                continue
            starts = self.starts(axis)
            per_axis.append(sum(sum(1 for s in starts if s < min((k + 1) * b, n) and s + p > k * b)
                                for k in range(self.grid[axis])))  # fmt: skip
        return math.prod(per_axis), whole


def plan_blocks(
    shape: Sequence[int],
    patch_size: Sequence[int] | int,
    overlap: float,
    block_size: Sequence[int] | int | None = None,
    size_divisor: Sequence[int] | int = 1,
    tiles_per_block: int = 4,
) -> BlockPlan:
    """The block plan of an image of spatial ``shape``. ``block_size`` (per axis, or one for all; None:
    ``tiles_per_block`` tile steps along each axis, the whole axis where that is longer) must be at
    least the tile step, so that a block is predicted by a bounded number of tiles."""
    shape = tuple(int(n) for n in shape)
    ndim = len(shape)
    patch = tile_size(patch_size, size_divisor, ndim)
    steps = tuple(max(1, int(p * (1 - overlap))) for p in patch)
    if block_size is None:
        size = tuple(min(n, s * tiles_per_block) for n, s in zip(shape, steps, strict=True))
    else:
        size = (int(block_size),) * ndim if isinstance(block_size, int) else tuple(int(b) for b in block_size)
        if len(size) != ndim or any(b < 1 for b in size):
            raise BiosegError(f"block size {block_size} must be one positive size or one per spatial axis ({ndim})")
        size = tuple(min(b, n) for b, n in zip(size, shape, strict=True))
        small = [(b, s, n) for b, s, n in zip(size, steps, shape, strict=True) if b < min(s, n)]
        if small:
            raise BiosegError(
                f"block size {size} is smaller than the tile step {steps} (tile {patch}, overlap {overlap}): "
                "each block would predict mostly halo; use blocks of at least one step, better several"
            )
    align = (size_divisor,) * ndim if isinstance(size_divisor, int) else tuple(int(d) for d in size_divisor)
    return BlockPlan(shape, patch, float(overlap), size, align)
