"""Block-wise prediction of large images: bounded memory, overhead against whole-image prediction, stitching.

1. Memory: two generated OME-Zarr volumes four times apart in size, the larger one bigger than the
   ``--memory-limit`` the run is given, predicted by ``bioseg predict-blocks`` (a tiny 3D network) in a
   subprocess; the peak resident memory of its whole process tree is sampled from /proc. Bounded memory
   means both peaks are alike and under the limit. The smaller volume is also run on a LocalCluster of
   2 worker processes.
2. Overhead: the default 2D network on an image that fits in memory, whole-image ``Predictor.predict``
   against ``predict_blocks`` (blocks of 4 and 8 tile steps), interleaved; the ratio is block-wise time
   over whole-image time. The tiles straddling block faces are counted (they are predicted twice).
3. Stitching: a synthetic volume of about 13,800 objects cut into 8, 64 and 512 blocks: time and peak
   traced memory of finding the objects block by block and stitching them.

Generated files are deleted at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
from _common import RESULTS, machine

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = 8  # of which the network reads the first: 64 bytes a voxel on disk
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "inference")]


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants, now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def run_measured(command: list[str]) -> dict:
    """Run ``command``; its wall time and the peak resident memory of its process tree (sampled at 5 Hz)."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    out, err = proc.communicate()
    sampler.join()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(command[2:4])} failed: {err.strip().splitlines()[-1]}")
    seconds = round(time.perf_counter() - start, 1)
    return {"seconds": seconds, "peak_rss_mb": round(peak[0] / 2**20), "said": out.strip()}


def tiny_run(folder: Path) -> Path:
    from helpers import saved_run

    return saved_run(folder, {
        "name": "tiny3d", "data": {"root": str(folder / "absent"), "patch_size": [16, 128, 128], "labels": "instance",
                                   "channels": [0]},
        "model": {"spatial_dims": 3, "widths": [2, 4], "pool_sizes": [[1, 2, 2]]},
        "infer": {"patch_size": [16, 128, 128], "precision": "fp32", "batch_size": 1, "overlap": 0.1},
    })  # fmt: skip


def write_volume(path: Path, shape: tuple[int, ...]) -> int:
    """An 8-channel float64 OME-Zarr volume (C, Z, Y, X) of which the network reads one channel: 64 bytes
    a voxel, so that a volume larger than the memory limit is predicted in minutes on two cores. Written
    slab by slab, never whole in memory; returns its size in bytes."""
    import zarr
    from ome_zarr.format import CurrentFormat
    from ome_zarr.writer import write_multiscales_metadata

    root = zarr.open_group(str(path), mode="w")
    shape = (CHANNELS, *shape)
    array = root.create_array("0", shape=shape, chunks=(1, 8, 128, 128), dtype="float64", compressors=None)
    rng = np.random.default_rng(0)
    for z in range(0, shape[1], 16):
        depth = min(16, shape[1] - z)
        array[:, z : z + depth] = rng.random((CHANNELS, depth, *shape[2:]))
    datasets = [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0] * 4}]}]
    axes = [{"name": "c", "type": "channel"}] + [{"name": a, "type": "space"} for a in "zyx"]
    write_multiscales_metadata(root, datasets, fmt=CurrentFormat(), axes=axes)
    return int(np.prod(shape)) * 8


def memory(work: Path, quick: bool) -> dict:
    run = tiny_run(work / "tiny")
    small = (8, 512, 1024) if not quick else (4, 256, 256)
    big = (small[0], small[1] * 2, small[2] * 2)  # 4x the voxels; z stays shorter than the tile
    out: dict = {"network": "UNet widths [2, 4], tile 16x128x128, overlap 0.1, input channel 0 of 8", "runs": []}
    limit = 1000 if not quick else 800
    # with 2 workers: the driver and two worker processes, each holding the model
    for shape, workers, limit_mb in ((small, None, limit), (big, None, limit), (small, 2, 3 * limit)):
        source = work / "in.zarr"
        size = write_volume(source, shape)
        command = [sys.executable, "-m", "bioseg", "predict-blocks", str(run), str(source), "-o", str(work / "o.zarr"),
                   "--memory-limit", f"{limit_mb}MB", "--instances", "off"]  # fmt: skip
        if workers:
            command += ["--workers", str(workers)]
        result = run_measured(command)
        stored = sum(p.stat().st_size for p in (work / "o.zarr").rglob("*") if p.is_file())
        result.update({"shape": list(shape), "input_mb": round(size / 2**20), "output_mb": round(stored / 2**20),
                       "memory_limit_mb": limit_mb,
                       "workers": workers or "threads (1 block at a time)",
                       "voxels_per_second": round(np.prod(shape) / result["seconds"])})  # fmt: skip
        out["runs"].append(result)
        print(json.dumps(result))
        shutil.rmtree(source)
        shutil.rmtree(work / "o.zarr")
    return out


def overhead(work: Path, quick: bool, repeats: int) -> dict:
    """Default 2D network, whole image against blocks of 4 and 8 tile steps, interleaved."""
    from helpers import saved_run

    from bioseg.inference.blockwise import predict_blocks
    from bioseg.inference.predictor import Predictor
    from bioseg.io.zarr_io import write_ome_zarr

    run = saved_run(work / "default2d", {"name": "default2d", "data": {"root": str(work / "absent")},
                                         "infer": {"precision": "fp32"}})  # fmt: skip
    predictor = Predictor.from_run(run)
    side = 1024 if quick else 2048
    image = np.random.default_rng(0).integers(0, 4096, (side, side), dtype=np.uint16)
    source = write_ome_zarr(work / "img.zarr", image, chunks=(512, 512))
    step = int(predictor.infer.patch_size[0] * (1 - predictor.infer.overlap))
    sizes = {"4 steps": 4 * step, "8 steps": 8 * step}
    predictor.predict(image[:512, :512])  # warm-up: the first convolutions choose their kernels
    times: dict[str, list[float]] = {"whole": [], **{k: [] for k in sizes}}
    tiles = {}
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.predict(image)
        times["whole"].append(time.perf_counter() - start)
        for name, size in sizes.items():
            shutil.rmtree(work / "o.zarr", ignore_errors=True)
            start = time.perf_counter()
            result = predict_blocks(predictor, source, work / "o.zarr", block_size=size)
            times[name].append(time.perf_counter() - start)
            tiles[name] = result.plan.tiles_total()
    whole = float(np.median(times["whole"]))
    out = {"image": [side, side], "tile": list(predictor.infer.patch_size), "overlap": predictor.infer.overlap,
           "whole_s": round(whole, 2), "blocks": {}}  # fmt: skip
    for name, size in sizes.items():
        t = float(np.median(times[name]))
        done, needed = tiles[name]
        out["blocks"][name] = {"block": size, "seconds": round(t, 2), "ratio_to_whole": round(t / whole, 3),
                               "tiles_blockwise": done, "tiles_whole": needed,
                               "tile_ratio": round(done / needed, 3),
                               "overhead_beyond_tiles": round(t / whole / (done / needed) - 1, 3)}  # fmt: skip
    print(json.dumps(out))
    shutil.rmtree(work / "o.zarr", ignore_errors=True)
    return out


def stitching(work: Path, quick: bool) -> dict:
    from scipy import ndimage as ndi
    from test_stitching import _blobs, _experiment

    from bioseg.inference.block_store import BlockStore, StoreLayout
    from bioseg.inference.stitching import find_objects

    shape = (32, 256, 256) if quick else (48, 384, 384)
    truth = _blobs(shape, 8, seed=0)
    prob = ndi.gaussian_filter((truth > 0).astype(np.float32), 0.7)[None]
    cfg = _experiment(work, "foreground", {"fg": {"type": "binary", "target": "foreground"}})
    out = {"shape": list(shape), "objects": int(truth.max()), "halo": [4, 8, 8], "cases": []}
    for per_axis in (2, 4, 8):
        block = tuple(n // per_axis for n in shape)
        path = work / f"stitch{per_axis}.zarr"
        store = BlockStore.open(path, StoreLayout(shape, block, {"fg": 1}, {"fg": 2}, True, None), {})
        store.array("probabilities")[...] = prob
        tracemalloc.start()
        start = time.perf_counter()
        n = find_objects(store, cfg, (4, 8, 8), None, {"scheduler": "threads", "num_workers": 1})
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        case = {"blocks": per_axis**3, "block": list(block), "seconds": round(seconds, 2),
                "peak_traced_mb": round(peak / 2**20), "objects": n}  # fmt: skip
        print(json.dumps(case))
        out["cases"].append(case)
        shutil.rmtree(path)
    return out


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--parts", default="memory,overhead,stitching")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_blockwise_"))
    results: dict = {"machine": machine(), "quick": args.quick}
    try:
        if "memory" in args.parts:
            results["memory"] = memory(work, args.quick)
        if "overhead" in args.parts:
            results["overhead"] = overhead(work, args.quick, args.repeats)
        if "stitching" in args.parts:
            results["stitching"] = stitching(work, args.quick)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "blockwise.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out / 'blockwise.json'}")


if __name__ == "__main__":
    main()
