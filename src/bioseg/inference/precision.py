"""Which precision runs fast here: bf16 where the hardware has it natively, float32 elsewhere."""

from __future__ import annotations

import torch

from bioseg.errors import BiosegError


def autocast_dtype(device: torch.device | str, precision: str) -> torch.dtype | None:
    """The autocast dtype for ``infer.precision`` on ``device``; None means plain float32.

    ``bf16`` is bfloat16 on the CPU (fast with AVX-512 BF16 / AMX) and on GPUs that support it; on a CUDA
    GPU without bfloat16 it falls back to float16, which every CUDA GPU runs fast. ``fp16`` asks for
    float16. ``auto`` is bf16 where the hardware runs it natively (a CUDA GPU, or a CPU whose oneDNN has
    bf16 kernels) and float32 elsewhere, where emulated bf16 would be slower than float32.
    """
    device = torch.device(device)
    if precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision not in ("bf16", "auto"):
        raise BiosegError(f"infer.precision is {precision!r}; expected fp32, bf16 or auto")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "auto" and not (device.type == "cpu" and cpu_has_native_bf16()):
        return None
    return torch.bfloat16


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN has bf16 kernels for this CPU (AVX-512 BF16 or AMX), where bf16 beats float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
