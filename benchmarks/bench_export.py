"""Benchmark: exporting a model — export time per format, file sizes, and tiles per second of the exports
(PyTorch eager, TorchScript, ONNX Runtime; fp32, and bf16 where the CPU has it natively).

The model is bioseg's default 2D UNet (widths 16-32-64-128, batch norm, one binary head) with its default
tile of 256x256 (``--quick``: widths 4-8, tile 64), built and saved as a run folder; speed does not depend
on training. Runtimes are timed interleaved on the same batch of 4 tiles, medians over rounds, once with
1 thread and once with torch's default thread count (bioseg.workflows.export_benchmark).

    python benchmarks/bench_export.py [--quick] [--threads N] [--out DIR]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import _common as C


def build_run(folder: Path, quick: bool) -> Path:
    from bioseg import config
    from bioseg.nn.bundle import build_network, save_model

    tile = [64, 64] if quick else [256, 256]
    model = {"widths": [4, 8]} if quick else {}
    cfg = config.from_dict({"name": "bench", "data": {"root": str(folder / "absent"), "patch_size": tile},
                            "model": model})  # fmt: skip
    save_model(build_network(cfg), cfg, folder / "run")
    return folder / "run"


def main() -> int:
    args = C.parser(__doc__.splitlines()[0]).parse_args()
    C.setup_threads(args.threads)
    from bioseg.nn.bundle import ModelBundle
    from bioseg.workflows import export_model as em
    from bioseg.workflows.export import export_run
    from bioseg.workflows.export_benchmark import benchmark_exports, table

    with tempfile.TemporaryDirectory() as tmp:
        run = build_run(Path(tmp), args.quick)
        seconds = {}
        for fmt in ("onnx", "torchscript", "bioimageio"):
            start = time.perf_counter()
            export_run(run, Path(tmp) / f"out_{fmt}", fmt)
            seconds[fmt] = time.perf_counter() - start
        start = time.perf_counter()
        result = export_run(run, Path(tmp) / "out", validate=True)
        seconds["all, validated"] = time.perf_counter() - start
        sizes = {p.name: p.stat().st_size for p in sorted(result.out_dir.rglob("*")) if p.is_file()}
        bundle = ModelBundle.load(run)
        model, example = em.probability_net(bundle), em.example_tile(bundle, em.example_image(bundle))
        rounds = 3 if args.quick else 7
        speed = {f"{n} thread(s)": benchmark_exports(model, example, result.files, rounds=rounds, threads=n)
                 for n in sorted({1, C.machine()["torch_threads"]})}  # fmt: skip
    print(C.table([[k, v] for k, v in seconds.items()], ["export", "seconds"]))
    print(C.table([[k, v] for k, v in sizes.items()], ["file", "bytes"]))
    for value in speed.values():
        print(table(value))
    payload = {"quick": args.quick, "tile": list(example.shape), "export_seconds": seconds, "file_bytes": sizes,
               "speed": speed, "checks": result.checks}  # fmt: skip
    path = C.write_result("export", payload, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
