"""Block-wise prediction of images larger than memory into an OME-Zarr store, through dask.

The input is read lazily (:mod:`bioseg.io.lazy`: OME-Zarr, HDF5, TIFF) as a dask array; each block of
the output (:mod:`.block_plan`) is read with its halo, predicted with the tiles of the whole image's
tile grid that touch it — the same tiler, blending and normalisation values as a whole-image
:meth:`~bioseg.inference.predictor.Predictor.predict`, so the result is the same to float rounding —
cropped to its core and written to its own chunks of the store (:mod:`.block_store`). Finished blocks
are recorded there, so a run started again with the same command does only what is left. Objects
(``post.instances``) are then found block by block and stitched (:mod:`.stitching`).

Per-image normalisation needs the image's percentiles before any block: they are measured once on
at most ``STATS_VOXELS`` voxels taken at a regular stride (every voxel of an image that small, so
exactly the whole-image values) and kept in the store's settings.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bioseg.config.schema import Normalization
from bioseg.data.dataset import channel_mapper, prepare_image
from bioseg.data.preprocess import select_channels
from bioseg.errors import BiosegError
from bioseg.inference.block_plan import Block, BlockPlan, plan_blocks
from bioseg.inference.block_store import STAGES, BlockStore, StoreLayout
from bioseg.inference.cluster import require_dask, scheduler
from bioseg.inference.heads import activate, to_labels
from bioseg.inference.predictor import Predictor
from bioseg.inference.tiling import blend_tiles, pad_axis
from bioseg.inference.uncertainty import RunningMean, split_maps
from bioseg.io.lazy import LazyImage, describe, open_lazy

STATS_VOXELS = 1 << 22
log = logging.getLogger("bioseg")


@dataclass
class BlockwiseResult:
    """What a run did: the store, the plan, blocks predicted now and found already done, objects found."""

    store: Path
    plan: BlockPlan
    predicted: int
    skipped: int
    objects: int | None = None


def check_blockwise(predictor: Predictor) -> None:
    """Refuse the settings whose result depends on the whole image at once, in one line each."""
    cfg, infer = predictor.cfg, predictor.infer
    if cfg.data.resize:
        raise BiosegError("block-wise prediction cannot fit a large image into the training square: data.resize is set")
    if infer.rescale != "off" or infer.object_size is not None:
        raise BiosegError("block-wise prediction predicts at the image's own scale: use --rescale off")
    if infer.tta:
        raise BiosegError("block-wise prediction does not average test-time views: use --no-tta")
    if cfg.post.min_size or cfg.post.fill_holes:
        raise BiosegError(
            "post.min_size and post.fill_holes need the whole image at once; block-wise labels are per voxel: "
            "set post.min_size: 0 and post.fill_holes: false (objects are filtered by post.instances.min_size)"
        )


def normalisation_values(image: LazyImage, predictor: Predictor) -> tuple[list[float] | None, list[float] | None]:
    """``(low, high)`` per channel for :func:`prepare_block`, as the whole image's normalisation finds them."""
    norm = predictor.cfg.data.normalization
    if norm.mode != "per_image":
        return None, None
    data = image.dask()
    if channel_mapper(predictor.cfg.data) is None:
        data = select_channels(data, predictor.cfg.data.channels, predictor.cfg.data.in_channels, image.path)
    spatial = data.shape[1:]
    stride = max(1, math.ceil((math.prod(spatial) / STATS_VOXELS) ** (1 / len(spatial))))
    sample = np.asarray(data[(slice(None), *[slice(None, None, stride)] * len(spatial))].compute(scheduler="threads"))
    sample = sample.astype(np.float32, copy=False).reshape(sample.shape[0], -1)
    lo, hi = np.percentile(sample, norm.percentiles, axis=1)
    return [float(v) for v in lo], [float(v) for v in hi]


def prepare_block(
    raw: np.ndarray, predictor: Predictor, low: list[float] | None, high: list[float] | None
) -> np.ndarray:
    """The normalised network input of a raw block ``(C, *region)``, with the whole image's values."""
    data = predictor.cfg.data
    if low is not None:
        data = data.model_copy(update={"normalization": Normalization(mode="dataset", low=low, high=high)})
    return prepare_image(raw, data, "block")


def model_digest(predictor: Predictor) -> str:
    """sha256 of every member's weights: a store is only resumed by the model that began it."""
    h = hashlib.sha256()
    for member in predictor.members:
        for key, value in member.net.state_dict().items():
            h.update(key.encode())
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
        h.update(repr(sorted(member.temperature.items())).encode())
    return h.hexdigest()


def block_probabilities(
    predictor: Predictor, image: np.ndarray, block: Block, patch: Sequence[int]
) -> dict[str, np.ndarray]:
    """Probabilities ``{head: (K, *core)}`` of one block from its prepared region ``(C, *region)``."""
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(predictor.device)
    for axis, (before, after) in enumerate(block.pad):
        x = pad_axis(x, axis + 1, before, after, "reflect")
    tiles = block.tile_slices(patch)
    heads = predictor.cfg.heads
    mean = RunningMean({name: head.type for name, head in heads.items()})
    with torch.inference_mode():
        for member in predictor.members:
            logits = blend_tiles(
                lambda batch, net=member.net: predictor._forward(batch, net),
                x,
                tiles,
                tuple(patch),
                blending=predictor.infer.blending,
                batch_size=predictor.infer.batch_size,
            )
            mean.add({name: activate(logits[name] * member.scale(name), head.type) for name, head in heads.items()})
    probs, _ = split_maps(mean.result())
    crop = (slice(None), *block.crop_slices)
    return {name: np.ascontiguousarray(p[crop]) for name, p in probs.items()}


def _predict_block(
    predictor: Predictor, store: BlockStore, block: Block, patch: tuple[int, ...], raw: np.ndarray,
    low: list[float] | None, high: list[float] | None, threads: int | None,
) -> int:  # fmt: skip
    """One task: predict, write the block's chunks, then mark it done. Returns 1."""
    if threads:
        torch.set_num_threads(threads)
    probs = block_probabilities(predictor, prepare_block(raw, predictor, low, high), block, patch)
    core = block.core_slices
    store.array("probabilities")[(slice(None), *core)] = np.concatenate(list(probs.values()))
    for name, head in predictor.cfg.heads.items():
        labels = to_labels(torch.from_numpy(probs[name]), head.type, predictor.infer.threshold).numpy()
        array = store.array(name)
        array[core] = labels.astype(array.dtype)
    store.mark(block.index, "probabilities")
    return 1


def _layout(predictor: Predictor, plan: BlockPlan, voxel_size: Sequence[float] | None) -> StoreLayout:
    heads = {name: (1 if head.type == "binary" else head.classes) for name, head in predictor.cfg.heads.items()}
    classes = {name: max(2, k) for name, k in heads.items()}
    objects = predictor.cfg.post.instances.mode != "off"
    if objects and "objects" in heads:
        raise BiosegError("a head named 'objects' would clash with the store's objects label image; rename the head")
    voxel = tuple(float(v) for v in voxel_size) if voxel_size else None
    return StoreLayout(plan.shape, plan.block_size, heads, classes, objects, voxel)


def block_bytes(plan: BlockPlan, image: LazyImage, predictor: Predictor) -> int:
    """A bound on the memory one block needs beyond the model and the network: the input chunks its read
    region touches (whole chunks are read) and their concatenation, the prepared input (numpy, tensor,
    padded), per output channel the blended sum, the activated map, its mean and the cropped copy, the
    weights, int64 labels per head."""
    # the largest region: of a first, a middle or a last block along each axis (the last may be short)
    candidates = itertools.product(*({0, g // 2, g - 1} for g in plan.grid))
    extents = [tuple(b - a for a, b in block.region) for block in map(plan.block, candidates)]
    region = max(math.prod(e) for e in extents)
    chunks = image.chunks[1:]
    touched = max(
        math.prod(min(n, (math.ceil(e / c) + 1) * c) for e, c, n in zip(ext, chunks, plan.shape, strict=True))
        for ext in extents
    )
    raw = image.shape[0] * image.dtype.itemsize
    heads = predictor.cfg.heads.values()
    out = sum(1 if h.type == "binary" else h.classes for h in heads)
    per_voxel = raw + 12 * predictor.cfg.data.in_channels + 16 * out + 4 + 8 * len(heads)
    return int(1.25 * (touched * raw + region * per_voxel))


def network_bytes(predictor: Predictor, patch: Sequence[int]) -> int:
    """What one batch of tiles through the network adds to this process's memory at its peak, measured
    on a batch of zeros (convolution workspaces make it several times the feature maps): the peak
    resident memory after it (Linux's VmHWM, reset first; ``ru_maxrss`` would carry the peak of the
    process that started this one) less the memory before; 0 where it cannot be measured."""
    status = Path("/proc/self/status")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the present resident size
    except OSError:
        return 0
    before = process_bytes()
    with torch.inference_mode():
        channels = predictor.cfg.data.in_channels
        predictor._forward(torch.zeros(predictor.infer.batch_size, channels, *patch, device=predictor.device))
    lines = status.read_text().splitlines()
    peak = next((int(line.split()[1]) * 1024 for line in lines if line.startswith("VmHWM:")), 0)
    return max(0, peak - before)


def process_bytes() -> int:
    """Resident memory of this process now (Linux; 0 elsewhere): what every worker holding the model
    needs before its first block."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def choose_plan(
    shape: Sequence[int], predictor: Predictor, block_size: Sequence[int] | int | None, memory_limit: int | None,
    parallel: int, image: LazyImage,
) -> BlockPlan:  # fmt: skip
    """The block plan: the given block size, or the largest number of tile steps per block (8 at most)
    whose blocks fit what ``memory_limit`` leaves to each of ``parallel`` processes beyond the model
    and the network (4 without a limit)."""
    infer = predictor.infer
    args = (shape, infer.patch_size, infer.overlap)
    if block_size is not None or memory_limit is None:
        return plan_blocks(*args, block_size, predictor._size_divisor)
    plan = plan_blocks(*args, None, predictor._size_divisor, tiles_per_block=1)
    fixed = process_bytes() + network_bytes(predictor, plan.patch)
    budget = memory_limit // parallel - fixed
    for n in (8, 6, 4, 3, 2, 1):
        plan = plan_blocks(*args, None, predictor._size_divisor, tiles_per_block=n)
        if block_bytes(plan, image, predictor) <= budget:
            return plan
    need = fixed + block_bytes(plan, image, predictor)
    raise BiosegError(
        f"--memory-limit {memory_limit // 2**20} MiB is too small: each of {parallel} process(es) needs about "
        f"{need // 2**20} MiB for the model, a batch of tiles and a block of one tile step"
    )


def predict_blocks(
    predictor: Predictor,
    source: str | Path,
    output: str | Path,
    *,
    block_size: Sequence[int] | int | None = None,
    halo: Sequence[int] | int | None = None,
    workers: int | None = None,
    address: str | None = None,
    memory_limit: int | None = None,
    voxel_size: Sequence[float] | None = None,
) -> BlockwiseResult:
    """Predict the image at ``source`` block by block into the OME-Zarr store ``output`` (created, or
    resumed when it was begun with the same settings). ``halo``: voxels around each block its objects
    are found in before stitching (default half a tile). ``workers``/``address``: see
    :func:`bioseg.inference.cluster.scheduler`. ``voxel_size``: (z, y, x) µm where the file has none."""
    require_dask()
    check_blockwise(predictor)
    if predictor.infer.patch_size in (None, "auto"):
        # one tile grid over the whole image, the training patch's: a tile plan per image would make each
        # block's tiles depend on the whole image's size; ``patch_size: null`` predicts the same whole
        predictor.infer = predictor.infer.model_copy(update={"patch_size": list(predictor.cfg.data.patch_size)})
    cfg = predictor.cfg
    image, found_voxel = open_lazy(source, cfg.model.spatial_dims, cfg.data.axes)
    voxel = voxel_size or cfg.data.voxel_size or found_voxel
    from bioseg.inference.stitching import default_halo, find_objects

    with scheduler(workers, address, memory_limit) as where:
        parallel = where["parallel"]
        plan = choose_plan(image.shape[1:], predictor, block_size, memory_limit, parallel, image)
        halo = default_halo(plan, halo)
        low, high = normalisation_values(image, predictor)
        settings = {
            "model": model_digest(predictor),
            "infer": predictor.infer.model_dump(mode="json"),
            "autocast": str(predictor._autocast),  # what precision "auto" chose on this machine
            "heads": {k: v.model_dump(mode="json") for k, v in cfg.heads.items()},
            "channels": cfg.data.model_dump(mode="json", include={"channels", "in_channels", "normalization"}),
            "instances": cfg.post.instances.model_dump(mode="json"),
            "input": describe(image),
            "block_size": list(plan.block_size),
            "halo": list(halo),
            "normalisation": {"low": low, "high": high},
            "voxel_size": list(voxel) if voxel else None,
        }
        store = BlockStore.open(output, _layout(predictor, plan, voxel), settings)
        done = store.done()
        todo = [b for b in plan.blocks() if not done[b.index] & STAGES["probabilities"]]
        skipped = plan.n_blocks - len(todo)
        if skipped:
            log.info(f"{output}: {skipped} of {plan.n_blocks} blocks already done, {len(todo)} to predict")
        _run_blocks(predictor, store, plan, image, todo, low, high, where)
        objects = find_objects(store, cfg, halo, voxel, where["compute"]) if store.layout.objects else None
    return BlockwiseResult(Path(output), plan, len(todo), skipped, objects)


def predict_run_blocks(
    run_dir: str | Path,
    source: str | Path,
    output: str | Path,
    *,
    instances: str | None = None,
    batch_size: int | None = None,
    precision: str | None = None,
    **options: Any,
) -> BlockwiseResult:
    """:func:`predict_blocks` with the model of a run folder; ``instances`` (off, boundary, foreground)
    overrides the run's ``post.instances.mode``."""
    predictor = Predictor.from_run(run_dir, batch_size=batch_size, precision=precision)
    if instances is not None:
        if instances not in ("off", "boundary", "foreground"):
            raise BiosegError(f"--instances '{instances}' is not one of off, boundary, foreground")
        settings = predictor.cfg.model_dump()
        settings["post"]["instances"]["mode"] = instances
        predictor.cfg = type(predictor.cfg).model_validate(settings)  # fills in the heads the mode reads
    return predict_blocks(predictor, source, output, **options)


def _run_blocks(
    predictor: Predictor, store: BlockStore, plan: BlockPlan, image: LazyImage, todo: list[Block],
    low: list[float] | None, high: list[float] | None, where: dict[str, Any],
) -> None:  # fmt: skip
    """The prediction tasks of ``todo`` through dask, in waves of as many blocks as run at once."""
    import dask

    if not todo:
        return
    threads = max(1, (os.cpu_count() or 1) // where["parallel"]) if "num_workers" not in where["compute"] else None
    shared = dask.delayed(predictor, pure=True, traverse=False)
    data = image.dask()
    # one block per process at a time (two on a cluster, so that workers never wait): dask would read
    # the regions of every block it is given before predicting them, and memory is per block
    wave = where["parallel"] if "num_workers" in where["compute"] else 2 * where["parallel"]
    for first in range(0, len(todo), wave):
        tasks = [
            dask.delayed(_predict_block, pure=False)(
                shared, store, b, plan.patch, data[(slice(None), *b.region_slices)], low, high, threads
            )
            for b in todo[first : first + wave]
        ]
        dask.compute(*tasks, **where["compute"])
