"""Lengths that say their unit: a plain number is voxels of the finest axis, ``"0.5 um"`` is micrometres.

The seed options of ``post.instances`` (``h``, ``min_distance``, ``sigma_seeds``) are lengths. Their unit
never depends on another key: ``h: 1`` is one in-plane voxel whether or not a voxel size is known, and
``h: "0.5 um"`` is half a micrometre, which needs a voxel size (``data.voxel_size``, the files' metadata
or ``--spacing``) to be turned into voxels. ``"2 voxels"`` is accepted and stored as the number 2.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from bioseg.errors import BiosegError

#: unit names read as micrometres, and as voxels (of the finest axis)
MICROMETRES = ("um", "µm", "μm", "micron", "microns", "micrometre", "micrometres", "micrometer", "micrometers")
VOXELS = ("voxel", "voxels", "vx", "px", "pixel", "pixels")
_NUMBER_UNIT = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([^\d\s].*?)?\s*$")

Length = float | int | str
_EXPECTED = "expected a length: a number of voxels (of the finest axis), or micrometres such as '0.5 um'"


def parse_length(value: object) -> tuple[float, str]:
    """``(number, unit)`` with unit ``"voxels"`` or ``"um"``: 2 → (2, voxels), ``"0.5 µm"`` → (0.5, um)."""
    if isinstance(value, bool):
        raise ValueError(_EXPECTED)
    if isinstance(value, int | float):
        number, unit = float(value), "voxels"
    elif isinstance(value, str) and (match := _NUMBER_UNIT.match(value)):
        word = (match.group(2) or "voxels").strip().lower()
        if word in MICROMETRES:
            unit = "um"
        elif word in VOXELS:
            unit = "voxels"
        else:
            raise ValueError(f"unknown unit {match.group(2)!r}; {_EXPECTED}")
        number = float(match.group(1))
    else:
        raise ValueError(_EXPECTED)
    if not math.isfinite(number):
        raise ValueError(_EXPECTED)
    return number, unit


def normal_length(value: object, *, minimum: float, inclusive: bool, whole: bool = False) -> Length:
    """The stored form of a length: a number for voxels (an int where ``whole``), ``"<x> um"`` for
    micrometres; refused below ``minimum`` (or at it, unless ``inclusive``)."""
    number, unit = parse_length(value)
    if number < minimum or (number == minimum and not inclusive):
        raise ValueError(f"a length {'≥' if inclusive else '>'} {minimum:g} is needed")
    if unit == "um":
        return micrometres(number)
    if whole:
        if number != int(number):
            raise ValueError(f"a whole number of voxels is needed, e.g. {max(1, round(number))}")
        return int(number)
    return number


def micrometres(number: float) -> str:
    """The stored form of a length in micrometres, exact: 0.5 → ``"0.5 um"``, 2.0 → ``"2 um"``."""
    text = repr(float(number))
    return f"{text.removesuffix('.0')} um"


def length_in_voxels(value: Length, spacing: Sequence[float] | None, name: str) -> float:
    """``value`` in voxels of the finest axis: a plain number as it is, ``"<x> um"`` divided by the finest
    voxel size of ``spacing`` (None: no voxel size is known, an error for micrometres)."""
    number, unit = parse_length(value)
    if unit == "voxels":
        return number
    if spacing is None:
        raise BiosegError(
            f"post.instances.{name} is {value!r}, a length in micrometres, but no voxel size is known for "
            f"this image; set data.voxel_size (or --spacing), or give {name} in voxels, e.g. {name}: 2"
        )
    return number / float(min(spacing))


def relative_spacing(spacing: Sequence[float]) -> tuple[float, ...]:
    """``spacing`` divided by its finest value: distances in these units are voxels of the finest axis."""
    finest = float(min(spacing))
    return tuple(float(s) / finest for s in spacing)
