"""``bioseg predict-blocks``: one large image predicted block by block into an OME-Zarr store.

A command of its own rather than a mode of ``predict``: it takes one image and writes one store (not
a folder of TIFFs per image), it can be resumed, and its options (blocks, workers, a cluster, memory)
mean nothing to ``predict``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from bioseg.cli.app import app, parse_voxel_size
from bioseg.errors import BiosegError


def _sizes(text: str | None, what: str) -> int | list[int] | None:
    """``"64,512,512"`` → [64, 512, 512]; ``"512"`` → 512 (every axis)."""
    if not text:
        return None
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise BiosegError(f"{what} '{text}' is not a size; write e.g. {what} 64,512,512 or {what} 512")
    return values[0] if len(values) == 1 else values


@app.command("predict-blocks")
def predict_blocks_command(
    run_dir: Path = typer.Argument(..., help="run folder (…/fold_0) or its model/ folder"),
    source: Path = typer.Argument(..., help="the image: OME-Zarr (img.zarr), HDF5 (file.h5/dataset) or TIFF"),
    output: Path = typer.Option(..., "--output", "-o", help="the OME-Zarr store to write (or to resume)"),
    block_size: str | None = typer.Option(None, help="block (and chunk) size, e.g. 64,512,512 [default: 4 tile "
                                                     "steps per axis, or what --memory-limit allows]"),  # fmt: skip
    halo: str | None = typer.Option(None, help="voxels around a block its objects are found in [default: half a tile]"),
    workers: int | None = typer.Option(None, help="run on a local dask cluster of this many worker processes"),
    scheduler: str | None = typer.Option(None, help="run on a running dask cluster, e.g. tcp://host:8786"),
    memory_limit: str | None = typer.Option(None, help="memory the run may use, e.g. 4GB: sizes the blocks"),
    instances: str | None = typer.Option(None, help="objects: off, boundary or foreground [default: the run's]"),
    voxel_size: str | None = typer.Option(None, help="z,y,x in µm where the file has none"),
    batch_size: int | None = typer.Option(None, help="tiles per forward pass"),
    precision: str | None = typer.Option(None, help="auto, fp32, bf16 or fp16 (default: the run's)"),
) -> None:
    """Predict a large image block by block: probabilities, labels and objects in one OME-Zarr store.
    Run it again with the same arguments after a crash: finished blocks are kept."""
    from bioseg.inference.blockwise import predict_run_blocks
    from bioseg.inference.cluster import parse_memory

    result = predict_run_blocks(
        run_dir, source, output,
        instances=instances,
        block_size=_sizes(block_size, "--block-size"),
        halo=_sizes(halo, "--halo"),
        workers=workers,
        address=scheduler,
        memory_limit=parse_memory(memory_limit),
        voxel_size=parse_voxel_size(voxel_size),
        batch_size=batch_size,
        precision=precision,
    )  # fmt: skip
    plan = result.plan
    typer.echo(f"{plan.n_blocks} blocks of {'x'.join(map(str, plan.block_size))}: {result.predicted} predicted, "
               f"{result.skipped} already done")  # fmt: skip
    if result.objects is not None:
        typer.echo(f"{result.objects} objects")
    typer.echo(f"wrote {result.store}")
