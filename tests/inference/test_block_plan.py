"""The block plan: blocks tile the image, each block holds every tile of the whole image's grid that
covers one of its voxels, short axes are padded as the tiler pads them, and too small blocks are refused."""

import itertools

import numpy as np
import pytest

from bioseg.errors import BiosegError
from bioseg.inference.block_plan import plan_blocks
from bioseg.inference.tiling import tile_starts


@pytest.mark.parametrize(("shape", "block"), [((19, 90, 77), (6, 24, 24)), ((101, 87), (40, 33)), ((5, 70), (5, 30))])
def test_blocks_partition_the_image_and_hold_every_covering_tile(shape, block):
    patch = (8, 32, 32)[-len(shape):]
    plan = plan_blocks(shape, patch, 0.25, block)
    seen = np.zeros(shape, np.int32)
    for b in plan.blocks():
        seen[b.core_slices] += 1
        for axis, ((lo, hi), (r0, r1)) in enumerate(zip(b.core, b.region, strict=True)):
            n, p = shape[axis], plan.patch[axis]
            if n < p:  # one tile, padded as the tiler pads: the core sits after the padding
                assert (r0, r1) == (0, n) and sum(b.pad[axis]) == p - n
                assert b.crop[axis] == (lo + b.pad[axis][0], hi + b.pad[axis][0])
                continue
            covering = [s for s in tile_starts(n, p, 0.25) if s < hi and s + p > lo]
            origins = sorted({t[axis] + r0 for t in b.tiles})
            assert origins == covering  # exactly the tiles of the grid that touch the core
            assert (r0, r1) == (covering[0], covering[-1] + p) and b.crop[axis] == (lo - r0, hi - r0)
        assert len(b.tiles) == len(set(b.tiles)) and list(b.tiles) == sorted(b.tiles)  # C order, as the tiler
    np.testing.assert_array_equal(seen, 1)


def test_aligned_blocks_repeat_one_tile_per_face():
    # 200 = 32 + 7 steps of 24: tiles at exact multiples of the step; faces at 48, 96, 144, 192
    plan = plan_blocks((200,), (32,), 0.25, (48,))
    assert tile_starts(200, 32, 0.25) == [i * 24 for i in range(8)]
    blockwise, whole = plan.tiles_total()
    assert whole == 8 and blockwise == whole + (plan.grid[0] - 1)  # one straddling tile per face


def test_default_block_is_four_tile_steps_and_small_blocks_are_refused():
    plan = plan_blocks((100, 500, 500), (8, 32, 32), 0.25)
    assert plan.block_size == (24, 96, 96)
    with pytest.raises(BiosegError, match="smaller than the tile step"):
        plan_blocks((100, 500, 500), (8, 32, 32), 0.25, (8, 16, 96))
    with pytest.raises(BiosegError, match="one per spatial axis"):
        plan_blocks((100, 500, 500), (8, 32, 32), 0.25, (8, 96))


def test_size_divisor_rounds_the_tile_like_the_tiler():
    plan = plan_blocks((64, 64), (30, 30), 0.25, 32, size_divisor=8)
    assert plan.patch == (24, 24)
    assert plan.grid == (2, 2) and plan.n_blocks == len(list(plan.blocks()))
    assert set(itertools.chain(*[b.index for b in plan.blocks()])) == {0, 1}
