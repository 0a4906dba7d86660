"""``bioseg export --benchmark``: tiles per second of the exported network in PyTorch (eager), TorchScript
and ONNX Runtime, on the same batch of tiles, interleaved (A B C A B C …) so that a busy moment of the
machine slows each alike; medians over rounds. float32 everywhere; bf16 (autocast) for PyTorch and
TorchScript only where the CPU has native bf16 (avx512_bf16 or amx_bf16): elsewhere it is emulated and
slower, and ONNX Runtime's CPU kernels have no bf16 convolution."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bioseg.inference.fast_net import fold_batchnorm, memory_format
from bioseg.inference.precision import NATIVE_BF16_FLAGS, cpu_flags, cpu_model
from bioseg.workflows.export_model import INPUT, ProbabilityNet, write_json

BATCH = 4  # tiles per forward pass, as prediction's default
ROUNDS = 7  # timing rounds; each calls each runtime for MIN_SECONDS at least
MIN_SECONDS = 0.2


def _torch_runner(net: Callable, x: torch.Tensor, bf16: bool) -> Callable[[], Any]:
    def run() -> Any:  # bf16: autocast, as prediction runs it
        cast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with torch.inference_mode(), cast:
            return net(x)

    return run


def runners(model: ProbabilityNet, batch: np.ndarray, files: dict[str, Path]) -> dict[str, Callable[[], Any]]:
    """name → a function that predicts ``batch`` once, for every runtime (and bf16 where native)."""
    x = torch.from_numpy(batch)
    out = {"pytorch fp32": _torch_runner(model, x, False)}
    native = bool(cpu_flags() & NATIVE_BF16_FLAGS)
    if native:
        out["pytorch bf16"] = _torch_runner(model, x, True)
    # as bioseg predict runs it: BatchNorm folded into the convolutions, channels-last layout
    layout = memory_format(x.ndim - 2)
    fast = ProbabilityNet(fold_batchnorm(model.net), model.head_types).to(memory_format=layout)
    x_last = x.contiguous(memory_format=layout)
    out["pytorch predictor fp32"] = _torch_runner(fast, x_last, False)
    if native:
        out["pytorch predictor bf16"] = _torch_runner(fast, x_last, True)
    if "torchscript" in files:
        from bioseg.workflows.export_torchscript import load_torchscript

        script = load_torchscript(files["torchscript"])
        out["torchscript fp32"] = _torch_runner(script, x, False)
        if native:
            out["torchscript bf16"] = _torch_runner(script, x, True)
    if "onnx" in files:
        from bioseg.workflows.export_onnx import session

        sess = session(files["onnx"], threads=torch.get_num_threads())
        out["onnxruntime fp32"] = lambda: sess.run(None, {INPUT: batch})
    return out


def time_runners(runs: dict[str, Callable[[], Any]], rounds: int | None = None) -> dict[str, float]:
    """Median seconds per call of each runner; each round calls each runner for MIN_SECONDS at least."""
    rounds, min_seconds = rounds or ROUNDS, MIN_SECONDS
    for run in runs.values():  # warm-up: first calls allocate, JIT and optimise
        run(), run()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            calls, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < min_seconds or calls == 0:
                run()
                calls += 1
            samples[name].append(elapsed / calls)
    return {name: float(np.median(s)) for name, s in samples.items()}


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def benchmark_exports(
    model: ProbabilityNet, example: np.ndarray, files: dict[str, Path], folder: Path | None = None, *,
    rounds: int | None = None, threads: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Tiles per second per runtime on ``BATCH`` copies of the ``example`` tile, with ``threads`` threads
    each (default: torch's); with ``folder``, written to ``benchmark.json`` and ``benchmark.md`` there."""
    batch = np.ascontiguousarray(np.repeat(example[:1], BATCH, axis=0))
    with torch_threads(threads) as used:
        seconds = time_runners(runners(model, batch, files), rounds)
    base = seconds["pytorch fp32"]
    result = {
        "cpu": cpu_model(),
        "native_bf16": sorted(cpu_flags() & NATIVE_BF16_FLAGS),
        "threads": used,
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "batch": list(batch.shape),
        "rounds": rounds or ROUNDS,
        "runtimes": {name: {"seconds_per_batch": s, "tiles_per_second": BATCH / s, "vs_pytorch_fp32": base / s}
                     for name, s in seconds.items()},  # fmt: skip
    }
    if folder is not None:
        write_json(folder / "benchmark.json", result)
        (folder / "benchmark.md").write_text(table(result))
    return result


def table(result: dict[str, Any]) -> str:
    """A Markdown table of a :func:`benchmark_exports` result."""
    lines = [
        f"Tiles per second, batch {result['batch']}, {result['threads']} thread(s), {result['cpu']} "
        f"(native bf16: {', '.join(result['native_bf16']) or 'none'}; load average {result['load_average']})",
        "",
        "| runtime | tiles/s | s/batch | vs PyTorch fp32 |",
        "|---|---:|---:|---:|",
    ]
    for name, r in result["runtimes"].items():
        lines.append(f"| {name} | {r['tiles_per_second']:.1f} | {r['seconds_per_batch']:.4f} | "
                     f"{r['vs_pytorch_fp32']:.2f}x |")  # fmt: skip
    return "\n".join(lines) + "\n"
