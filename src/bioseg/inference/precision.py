"""Which precision runs fast here.

On a CUDA GPU: bf16 where it is supported, else fp16. On a CPU, ``auto`` means bf16 only where the CPU
runs it natively *and* it is measured faster: the CPU's own flags must list ``avx512_bf16`` or
``amx_bf16`` (torch's ``_is_mkldnn_bf16_supported`` also answers yes where bf16 is emulated, two to three
times slower than float32), and a one-off micro-benchmark of a convolution in both precisions must
confirm it. The measurement is cached per CPU model and torch version in ``~/.cache/bioseg``, so it runs
once per machine, and the choice is logged once per process in one line. ``ONEDNN_MAX_CPU_ISA`` (oneDNN's
own setting) set to an instruction set without bf16, such as ``AVX512_CORE_VNNI``, keeps oneDNN off the
CPU's bf16 instructions: ``auto`` is then fp32, as on a CPU without them.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from bioseg.errors import BiosegError

log = logging.getLogger("bioseg")

#: CPU flags of native bf16 arithmetic (x86: AVX-512 BF16, AMX); Arm's bf16 flag has no oneDNN fast path here
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
#: oneDNN instruction-set caps (``ONEDNN_MAX_CPU_ISA``) that include bf16 arithmetic; DEFAULT/ALL: no cap
_ISA_CAPS_WITH_BF16 = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AMX", "AVX10", "DEFAULT", "ALL")


@dataclass(frozen=True)
class CpuPrecision:
    """The ``auto`` precision of this CPU and why: ``precision`` is ``bf16`` or ``fp32``."""

    precision: str
    reason: str
    fp32_ms: float | None = None  # the conv step of the micro-benchmark, when it ran
    bf16_ms: float | None = None


def autocast_dtype(device: torch.device | str, precision: str) -> torch.dtype | None:
    """The autocast dtype for ``infer.precision`` on ``device``; None means plain float32.

    ``bf16`` is bfloat16 wherever it is asked for (on a CUDA GPU without bfloat16: float16); ``fp16``
    is float16; ``auto`` is bf16 on a CUDA GPU that supports it (else fp16) and, on a CPU, what
    :func:`cpu_precision` measured to be faster.
    """
    device = torch.device(device)
    if precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision not in ("bf16", "auto"):
        raise BiosegError(f"infer.precision is {precision!r}; expected fp32, bf16, fp16 or auto")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "auto" and not (device.type == "cpu" and cpu_has_native_bf16()):
        return None
    return torch.bfloat16


def cpu_has_native_bf16() -> bool:
    """Whether ``auto`` runs bf16 on this CPU (see :func:`cpu_precision`)."""
    return cpu_precision().precision == "bf16"


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``); empty where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    line = next((ln for ln in text.splitlines() if ln.startswith(("flags", "Features"))), "")
    return frozenset(line.partition(":")[2].split())


def onednn_isa_cap() -> str | None:
    """oneDNN's instruction-set cap from the environment (``ONEDNN_MAX_CPU_ISA``, formerly
    ``DNNL_MAX_CPU_ISA``), upper-cased; None when unset."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return cap.strip().upper() if cap and cap.strip() else None


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    line = next((ln for ln in text.splitlines() if ln.startswith("model name")), "")
    return line.partition(":")[2].strip() or platform.machine()


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "bioseg"


def conv_step_ms(repeats: int = 5) -> tuple[float, float]:
    """Median milliseconds of a 3×3 convolution 64 → 64 on 4 × 128² (channels-last, inference), in fp32
    and under bf16 autocast, interleaved so that both see the same machine load."""
    x = torch.randn(4, 64, 128, 128).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last).eval()

    def timed(bf16: bool) -> float:
        start = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            conv(x)
        return (time.perf_counter() - start) * 1000

    timed(False), timed(True)  # first calls choose and build the kernels
    fp32, bf16 = [], []
    for _ in range(repeats):
        fp32.append(timed(False))
        bf16.append(timed(True))
    return sorted(fp32)[repeats // 2], sorted(bf16)[repeats // 2]


@cache
def cpu_precision() -> CpuPrecision:
    """This CPU's ``auto`` precision, decided once per process (see :func:`decide_cpu_precision`)."""
    choice = decide_cpu_precision(cpu_flags(), cpu_model(), default_cache_dir(), conv_step_ms, onednn_isa_cap())
    log.info("precision auto → %s: %s", choice.precision, choice.reason)
    return choice


def decide_cpu_precision(
    flags: frozenset[str],
    model: str,
    cache_dir: Path | None,
    measure: Callable[[], tuple[float, float]],
    isa_cap: str | None = None,
) -> CpuPrecision:
    """fp32 without a native bf16 flag, or with oneDNN capped below bf16 (``isa_cap``); else bf16 if the
    measured conv step is faster in bf16. The measurement is read from, or written to,
    ``cache_dir/precision.json`` under the CPU model, torch version and cap (None: not cached)."""
    if not flags & NATIVE_BF16_FLAGS:
        return CpuPrecision("fp32", f"{model} has no native bf16 (no {' or '.join(sorted(NATIVE_BF16_FLAGS))})")
    if isa_cap is not None and not any(part in isa_cap for part in _ISA_CAPS_WITH_BF16):
        return CpuPrecision("fp32", f"ONEDNN_MAX_CPU_ISA={isa_cap} keeps oneDNN off the bf16 instructions of {model}")
    key = f"{model} | torch {torch.__version__}" + (f" | {isa_cap}" if isa_cap else "")
    cached = _read_cache(cache_dir).get(key)
    if cached is None:
        fp32_ms, bf16_ms = measure()
        cached = {"fp32_ms": round(fp32_ms, 3), "bf16_ms": round(bf16_ms, 3)}
        _write_cache(cache_dir, key, cached)
    fp32_ms, bf16_ms = cached["fp32_ms"], cached["bf16_ms"]
    if bf16_ms < fp32_ms:
        return CpuPrecision("bf16", f"bf16 is {fp32_ms / bf16_ms:.1f}× faster than fp32 on {model}", fp32_ms, bf16_ms)
    return CpuPrecision("fp32", f"bf16 is {bf16_ms / fp32_ms:.1f}× slower than fp32 on {model}", fp32_ms, bf16_ms)


def _read_cache(cache_dir: Path | None) -> dict:
    if cache_dir is None:
        return {}
    try:
        doc = json.loads((cache_dir / "precision.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}  # absent or damaged: measured again
    return doc if isinstance(doc, dict) else {}


def _write_cache(cache_dir: Path | None, key: str, entry: dict) -> None:
    if cache_dir is None:
        return
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        doc = _read_cache(cache_dir) | {key: entry}
        tmp = cache_dir / "precision.json.tmp"
        tmp.write_text(json.dumps(doc, indent=2))
        tmp.replace(cache_dir / "precision.json")
    except OSError:
        log.debug("could not cache the precision measurement in %s", cache_dir)  # a read-only home: measure again


__all__ = [
    "NATIVE_BF16_FLAGS",
    "CpuPrecision",
    "autocast_dtype",
    "cpu_flags",
    "cpu_has_native_bf16",
    "cpu_model",
    "cpu_precision",
    "decide_cpu_precision",
    "onednn_isa_cap",
]
