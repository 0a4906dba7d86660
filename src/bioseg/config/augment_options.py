"""The augmentation transforms and their options, declared once: names, defaults and value checks.

The config checks every ``augment:`` step against :data:`AUGMENT_OPTIONS` when it is loaded, so a typo
fails before any image is read; the transforms in :mod:`bioseg.data.augment_transforms` check their
arguments with :func:`augment_option`, and a test keeps their signatures' defaults equal to the ones
declared here. Nothing here imports torch: loading a config stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bioseg.errors import BiosegError
from bioseg.registry import did_you_mean

__all__ = [
    "AUGMENT_OPTIONS",
    "Option",
    "augment_option",
    "check_augment_names",
    "check_augment_options",
    "spatial_axes",
    "value_range",
]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def value_range(
    value: Any, what: str, *, symmetric: bool = False, around: float | None = None, positive: bool = False
) -> tuple[float, float]:
    """A (low, high) pair from a pair or a number: ``x`` → (-x, x) if ``symmetric``, (around - x, around + x)
    if ``around`` is given, else (x, x) (a fixed value)."""
    if _is_number(value):
        v = float(value)
        if symmetric:
            low, high = -abs(v), abs(v)
        elif around is not None:
            low, high = around - abs(v), around + abs(v)
        else:
            low, high = v, v
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2 and all(map(_is_number, value)):
        low, high = float(value[0]), float(value[1])
    else:
        raise BiosegError(f"{what} must be a number or a pair [low, high] of numbers, got {value!r}")
    if low > high:
        raise BiosegError(f"{what} = {value!r} has low > high; write it as [low, high]")
    if positive and low <= 0:
        raise BiosegError(f"{what} = {value!r} must be > 0")
    return low, high


def spatial_axes(axes: Any, spatial_dims: int, what: str, count: int | None = None) -> tuple[int, ...]:
    """Spatial axes from user input, normalised to 0..d-1 (negative allowed); ``count`` demands that many."""
    axes = [axes] if isinstance(axes, int) else list(axes)
    if count is not None and len(axes) != count:
        raise BiosegError(f"{what}: expected {count} spatial axes, got {axes}; e.g. axes: [-2, -1]")
    out = []
    for a in axes:
        if not isinstance(a, int) or not -spatial_dims <= a < spatial_dims:
            raise BiosegError(
                f"{what}: axis {a!r} does not exist for {spatial_dims} spatial dims; "
                f"use spatial axes 0..{spatial_dims - 1} (or negative, -1 = last)"
            )
        out.append(a % spatial_dims)
    if len(set(out)) != len(out):
        raise BiosegError(f"{what}: axes {axes} name the same axis twice; give distinct axes")
    return tuple(out)


# --- per option: (value, "transform.option", spatial_dims) → normalised value ----------------------

Check = Callable[[Any, str, int], Any]


def _axes(count: int | None = None) -> Check:
    """Spatial axes; ``None`` (only where no count is demanded) means every axis."""
    return lambda v, what, d: spatial_axes(range(d) if v is None else v, d, what, count)


def _range(*, low: float | None = None, unit: str = "", **kwargs: Any) -> Check:
    """A :func:`value_range`, whose low end must be at least ``low``."""

    def check(v: Any, what: str, d: int) -> tuple[float, float]:
        out = value_range(v, what, **kwargs)
        if low is not None and out[0] < low:
            raise BiosegError(f"{what} must be >= {low:g}{unit}, got {v!r}")
        return out

    return check


def _factor(v: Any, what: str, d: int) -> tuple[float, float]:
    out = value_range(v, what, around=1.0)
    if out[0] < 0:
        raise BiosegError(f"{what} gives a negative factor: {v!r}")
    return out


def _pixels(v: Any, what: str, d: int) -> float:
    if not _is_number(v) or v <= 0:
        raise BiosegError(f"{what} must be one number of pixels > 0, got {v!r}")
    return float(v)


@dataclass(frozen=True)
class Option:
    """An option's default and its check (the default is what the transform's signature says)."""

    default: Any
    check: Check


#: transform name → option → declaration; every transform also takes ``p``, its probability
AUGMENT_OPTIONS: dict[str, dict[str, Option]] = {
    "flip": {"axes": Option(None, _axes())},
    "rot90": {"axes": Option((-2, -1), _axes(2))},
    "rotate": {"degrees": Option(180.0, _range(symmetric=True)), "axes": Option((-2, -1), _axes(2))},
    "scale": {"range": Option((0.8, 1.25), _range(positive=True))},
    "elastic": {"alpha": Option(10.0, _range(low=0.0, unit=" pixels")), "sigma": Option(8.0, _pixels)},
    "gaussian_blur": {"sigma": Option((0.5, 1.5), _range(low=0.0))},
    "gaussian_noise": {"std": Option((0.0, 0.1), _range(low=0.0))},
    "poisson_noise": {"scale": Option((20.0, 200.0), _range(positive=True))},
    "brightness_contrast": {
        "brightness": Option(0.2, _range(symmetric=True)),
        "contrast": Option(0.2, _factor),
    },
    "gamma": {"range": Option((0.7, 1.5), _range(positive=True))},
}


def check_augment_names(name: Any, keys: Any) -> None:
    """BiosegError unless ``name`` is a declared transform and every key ``p`` or one of its options."""
    names = sorted(AUGMENT_OPTIONS)
    if name not in AUGMENT_OPTIONS:
        raise BiosegError(
            f"unknown augmentation '{name}'; valid: {', '.join(names)}." + did_you_mean(str(name), names)
        )
    valid = ["p", *AUGMENT_OPTIONS[name]]
    unknown = [str(k) for k in keys if k not in valid]
    if unknown:
        raise BiosegError(
            f"augmentation '{name}' has no option '{unknown[0]}'; valid: {', '.join(valid)}."
            + did_you_mean(unknown[0], valid)
        )


def augment_option(name: str, option: str, value: Any, spatial_dims: int) -> Any:
    """``value`` of ``option`` of transform ``name``, checked and normalised (BiosegError naming both)."""
    return AUGMENT_OPTIONS[name][option].check(value, f"{name}.{option}", spatial_dims)


def check_augment_options(name: str, options: Mapping[str, Any], spatial_dims: int) -> dict[str, Any]:
    """Every option of transform ``name`` (defaults filled in) checked and normalised for ``spatial_dims``."""
    check_augment_names(name, options)
    return {
        key: augment_option(name, key, options.get(key, opt.default), spatial_dims)
        for key, opt in AUGMENT_OPTIONS[name].items()
    }
