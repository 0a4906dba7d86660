"""Shared helpers for the benchmarks: machine description, interleaved timing, medians, tables, JSON.

Every benchmark compares bioseg with a reference measured in the same process and interleaved with it
(A B A B …), so that a slow moment of a shared machine slows both sides alike; figures are medians.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


# --- machine --------------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo or platform, with its family/model when the name is generic."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if ":" in line:
                key, value = (part.strip() for part in line.split(":", 1))
                info.setdefault(key, value)
    except OSError:
        return platform.processor() or platform.machine()
    name = info.get("model name", platform.processor() or platform.machine())
    if "cpu family" in info:
        name += f" (family {info['cpu family']}, model {info.get('model', '?')})"
    return name


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine() -> dict[str, Any]:
    import torch

    flags = cpu_flags()
    out: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "bf16_instructions": sorted(f for f in flags if f in ("avx512_bf16", "amx_bf16", "amx_tile")),
        "cpu_flags": sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "f16c"))),  # the vector units
        "precision_auto": _auto_precision(),
        # set to e.g. AVX512_CORE_VNNI, oneDNN leaves bf16 instructions unused: a CPU without native bf16
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    for name in ("lightning", "monai", "numpy"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = None
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def _auto_precision() -> str:
    """What ``precision: auto`` chooses on this machine, and why."""
    from bioseg.inference.precision import cpu_precision

    choice = cpu_precision()
    return f"{choice.precision}: {choice.reason}"


# --- timing ---------------------------------------------------------------------------------------


def interleave(
    runs: dict[str, Callable[[], float | None]], repeats: int, warmup: int = 1, log: Callable[[str], None] = print
) -> dict[str, list[float]]:
    """Call every run once per round, in order, ``warmup + repeats`` rounds; keep the last ``repeats``.

    A run returns the seconds it measured itself, or None to be timed from call to return.
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(warmup + repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            measured = fn()
            elapsed = time.perf_counter() - start if measured is None else float(measured)
            if round_ >= warmup:
                times[name].append(elapsed)
            tag = "warm-up" if round_ < warmup else f"{round_ - warmup + 1}/{repeats}"
            log(f"  [{tag}] {name}: {elapsed:.2f} s")
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def paired_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Round by round ``numerator / denominator``: both were measured in the same round."""
    return [a / b for a, b in zip(numerators, denominators, strict=True)]


def spread(values: Sequence[float]) -> list[float]:
    """[min, max] for the JSON, to show how noisy a figure was."""
    return [float(min(values)), float(max(values))] if values else []


def target(value: float, minimum: float) -> dict[str, Any]:
    return {"value": round(value, 4), "target": f">= {minimum}", "pass": bool(value >= minimum)}


class PeakRSS:
    """Peak resident memory of this process while the ``with`` block runs, sampled from a thread.

    ``peak_mb - base_mb`` is what the block added on top of what the process held before (allocator
    caches included, so it is an upper bound on what the code itself needed).
    """

    def __init__(self, interval_s: float = 0.002) -> None:
        self.interval_s = interval_s
        self.base_mb = 0.0
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def rss_mb() -> float:
        try:
            pages = int(Path("/proc/self/statm").read_text().split()[1])
            return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError):
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self.rss_mb())
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakRSS:
        self.base_mb = self.peak_mb = self.rss_mb()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_mb = max(self.peak_mb, self.rss_mb())

    @property
    def added_mb(self) -> float:
        return self.peak_mb - self.base_mb


# --- output ---------------------------------------------------------------------------------------


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain-text table with right-aligned numbers."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
        return str(v)

    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    for row in cells:
        out.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    return "\n".join(out)


def write_result(name: str, payload: dict[str, Any], out_dir: Path | None = None) -> Path:
    """benchmarks/results/<name>.json with the machine and a timestamp added."""
    out_dir = Path(out_dir) if out_dir else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        **payload,
    }
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (a smoke test)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--out", type=Path, default=None, help=f"folder for the JSON result (default {RESULTS})")
    return p


def setup_threads(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def quiet_lightning() -> None:
    """Silence Lightning's info lines and the warnings that do not concern a benchmark."""
    import logging
    import warnings

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for pattern in (
        ".*does not have many workers.*",
        ".*is smaller than the logging interval.*",
        ".*overridden `on_after_batch_transfer`.*",
        ".*not supported by the model summary.*",
        ".*LeafSpec.*",
        ".*GPU available but not used.*",
        ".*TPU available.*",
        ".*Checkpoint directory.*exists and is not empty.*",
    ):
        warnings.filterwarnings("ignore", pattern)
