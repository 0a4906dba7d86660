"""Objects of a large image found block by block and stitched across block faces, without seams.

1. Each block's objects are found (``post.instances``, boundary or foreground mode) in its probabilities
   with a ``halo`` around it, so that an object near a face is seen whole by both blocks. The block's
   core is written with provisional ids ``(block number + 1) << 32 | local id`` (uint64, unique across
   blocks with no coordination), and the labels in a slab on each side of each face it shares are kept.
2. Across each face the two blocks' labels of the same slab are compared: objects that overlap with an
   IoU above one half are the same object. The pairs are the edges of a graph over all provisional ids;
   its connected components (scipy) are the stitched objects, numbered 1..N in the order of their first
   provisional id.
3. Each block's core is relabelled from provisional to final ids (final ids are below ``1 << 32``, so a
   relabelled block is left alone when a killed run starts again).

Every step is recorded per block in the store, as the predictions are (:mod:`.block_store`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from bioseg.config import Experiment
from bioseg.errors import BiosegError
from bioseg.inference.block_plan import BlockPlan
from bioseg.inference.block_store import STAGES, BlockStore
from bioseg.inference.instances import predict_instances

SHIFT = 32


def default_halo(plan: BlockPlan, halo: Sequence[int] | int | None) -> tuple[int, ...]:
    """The object halo per axis: given, or half a tile; never more than the image."""
    ndim = len(plan.shape)
    if halo is None:
        values = tuple(max(1, p // 2) for p in plan.patch)
    elif isinstance(halo, int):
        values = (halo,) * ndim
    else:
        values = tuple(int(h) for h in halo)
    if len(values) != ndim or any(h < 1 for h in values):
        raise BiosegError(f"halo {halo} must be one positive size or one per spatial axis ({ndim})")
    return tuple(min(h, n) for h, n in zip(values, plan.shape, strict=True))


def _slab(core: tuple[tuple[int, int], ...], axis: int, face: int, width: int, n: int) -> tuple[slice, ...]:
    """The slab ``face ± width`` along ``axis`` (inside the image), the block's core along the others."""
    return tuple(
        slice(max(0, face - width), min(n, face + width)) if d == axis else slice(a, b) for d, (a, b) in enumerate(core)
    )


def _heads_of(store: BlockStore, probs: np.ndarray) -> dict[str, np.ndarray]:
    out, first = {}, 0
    for name, k in store.layout.heads.items():
        out[name] = probs[first : first + k]
        first += k
    return out


def _block_objects(
    store: BlockStore, cfg: Experiment, index: tuple[int, ...], halo: tuple[int, ...], spacing: Any
) -> int:
    """Step 1 for one block. Returns its number of objects."""
    lay = store.layout
    shape, size = lay.shape, lay.block_size
    core = tuple((i * b, min((i + 1) * b, n)) for i, b, n in zip(index, size, shape, strict=True))
    region = tuple((max(0, a - h), min(n, b + h)) for (a, b), h, n in zip(core, halo, shape, strict=True))
    probs = np.asarray(store.array("probabilities")[(slice(None), *(slice(a, b) for a, b in region))])
    labels = predict_instances(_heads_of(store, probs), cfg, spacing)
    labels = labels.astype(np.uint64)
    if labels.max(initial=0) >= 1 << SHIFT:
        raise BiosegError(f"block {index} holds more than 2**32 objects; use smaller blocks")
    number = int(np.ravel_multi_index(index, lay.grid)) + 1
    provisional = np.where(labels > 0, labels | np.uint64(number << SHIFT), np.uint64(0))
    local = tuple(slice(a - r0, b - r0) for (a, b), (r0, _) in zip(core, region, strict=True))
    block_core = provisional[local]
    store.array("objects")[tuple(slice(a, b) for a, b in core)] = block_core
    ids = np.unique(block_core)
    store.save(store.ids_path(index), ids[ids > 0])
    for axis in range(len(shape)):
        width = max(1, halo[axis] // 2)
        for side, face in (("lo", core[axis][0]), ("hi", core[axis][1])):
            if face in (0, shape[axis]):
                continue
            slab = _slab(core, axis, face, width, shape[axis])
            inside = tuple(slice(s.start - r0, s.stop - r0) for s, (r0, _) in zip(slab, region, strict=True))
            store.save(store.face_path(index, axis, side), provisional[inside])
    store.mark(index, "objects")
    return int(ids.size - (ids[0] == 0 if ids.size else 0))


def match_faces(a: np.ndarray, b: np.ndarray, min_iou: float = 0.5) -> np.ndarray:
    """Pairs ``(id in a, id in b)`` of objects of two labellings of the same slab with IoU > ``min_iou``."""
    a, b = a.ravel(), b.ravel()
    both = (a > 0) & (b > 0)
    if not both.any():
        return np.zeros((0, 2), np.uint64)
    pairs, overlap = np.unique(np.stack([a[both], b[both]]), axis=1, return_counts=True)
    ids_a, size_a = np.unique(a[a > 0], return_counts=True)
    ids_b, size_b = np.unique(b[b > 0], return_counts=True)
    na = size_a[np.searchsorted(ids_a, pairs[0])]
    nb = size_b[np.searchsorted(ids_b, pairs[1])]
    keep = overlap / (na + nb - overlap) > min_iou
    return pairs[:, keep].T.astype(np.uint64)


def stitch(store: BlockStore) -> tuple[np.ndarray, np.ndarray]:
    """Step 2: ``(provisional ids, final ids)``, both sorted by provisional id, over every block's core."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    lay = store.layout
    blocks = list(itertools.product(*(range(g) for g in lay.grid)))
    core_ids = [np.load(store.ids_path(i)) for i in blocks]
    edges = []
    for index in blocks:
        for axis in range(len(lay.shape)):
            upper = tuple(k + (d == axis) for d, k in enumerate(index))
            if upper[axis] >= lay.grid[axis]:
                continue
            a = np.load(store.face_path(index, axis, "hi"))
            b = np.load(store.face_path(upper, axis, "lo"))
            edges.append(match_faces(a, b))
    provisional = np.concatenate(core_ids) if core_ids else np.zeros(0, np.uint64)
    provisional = provisional.astype(np.uint64)  # sorted: blocks in order, ids sorted in each
    pairs = np.concatenate(edges) if edges else np.zeros((0, 2), np.uint64)
    nodes = np.unique(np.concatenate([provisional, pairs.ravel()]))
    n = nodes.size
    rows, cols = np.searchsorted(nodes, pairs[:, 0]), np.searchsorted(nodes, pairs[:, 1])
    graph = coo_matrix((np.ones(rows.size, np.int8), (rows, cols)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    of_core = component[np.searchsorted(nodes, provisional)]
    first_seen = np.unique(of_core, return_index=True)[1]
    final_of_component = np.zeros(component.max(initial=-1) + 1, np.uint64)
    order = np.argsort(first_seen, kind="stable")
    final_of_component[np.unique(of_core)[order]] = np.arange(1, order.size + 1, dtype=np.uint64)
    return provisional, final_of_component[of_core]


def _relabel_block(store: BlockStore, index: tuple[int, ...], provisional: np.ndarray, final: np.ndarray) -> int:
    """Step 3 for one block: provisional ids → final ids, in place."""
    lay = store.layout
    core = tuple(slice(i * b, min((i + 1) * b, n)) for i, b, n in zip(index, lay.block_size, lay.shape, strict=True))
    array = store.array("objects")
    labels = np.asarray(array[core])
    todo = labels >= np.uint64(1 << SHIFT)
    if todo.any():
        labels[todo] = final[np.searchsorted(provisional, labels[todo])]
        array[core] = labels
    store.mark(index, "relabelled")
    return 1


def find_objects(
    store: BlockStore, cfg: Experiment, halo: Sequence[int], spacing: Any, compute: dict[str, Any]
) -> int:
    """Steps 1–3 over the blocks not yet done; returns the number of objects."""
    import dask

    lay = store.layout
    halo = tuple(int(h) for h in halo)
    blocks = list(itertools.product(*(range(g) for g in lay.grid)))
    done = store.done()
    first = [dask.delayed(_block_objects, pure=False)(store, cfg, i, halo, spacing)
             for i in blocks if not done[i] & STAGES["objects"]]  # fmt: skip
    dask.compute(*first, **compute)
    provisional, final = stitch(store)
    tasks = []
    for index in blocks:
        if done[index] & STAGES["relabelled"]:
            continue
        number = int(np.ravel_multi_index(index, lay.grid)) + 1
        lo, hi = np.searchsorted(provisional, [number << SHIFT, (number + 1) << SHIFT])
        tasks.append(dask.delayed(_relabel_block, pure=False)(store, index, provisional[lo:hi], final[lo:hi]))
    dask.compute(*tasks, **compute)
    return int(final.max(initial=0))

