"""The ``bioseg`` Typer application and the small parsers its commands share."""

from __future__ import annotations

import typer

from bioseg.errors import BiosegError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train and apply deep-learning segmentation models to biological images.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def parse_mask_values(text: str | None) -> dict[int, int] | None:
    """``"255:1,0:0"`` → {255: 1, 0: 0}."""
    if not text:
        return None
    try:
        return {int(k): int(v) for k, v in (pair.split(":") for pair in text.split(","))}
    except ValueError:
        raise BiosegError(
            f"--mask-values '{text}' is not RAW:CLASS pairs; write e.g. --mask-values 0:0,255:1"
        ) from None


def parse_size(text: str) -> int | list[int]:
    """``"400"`` → 400; ``"32,128,128"`` → [32, 128, 128]."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise BiosegError(f"--size '{text}' is not a size; write e.g. --size 400 or --size 32,128,128") from None
    return values[0] if len(values) == 1 else values


def parse_voxel_size(text: str | None) -> list[float] | None:
    """``"2,0.5,0.5"`` → [2.0, 0.5, 0.5] (z, y, x in µm); None → None."""
    if not text:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or not all(v > 0 for v in values):
        raise BiosegError(
            f"--voxel-size '{text}' is not three positive sizes; write e.g. --voxel-size 2,0.5,0.5 (z,y,x in µm)"
        )
    return values
