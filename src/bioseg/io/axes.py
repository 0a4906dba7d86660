"""Finding the channel and spatial axes of an array read from a file (the rules are in
:mod:`bioseg.io.images`): named axes from metadata or the caller, else a cautious shape heuristic."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bioseg.errors import BiosegError
from bioseg.io.errors import ImageReadError

_MAX_HEURISTIC_CHANNELS = 4

_CHANNEL_AXES = "CS"
_NON_CHANNEL_AXES = "ZT"  # a depth or time axis is never taken for channels
_CALLER_AXES = "CSZYXT"


def _check_axes_letters(axes: str, path: Path) -> str:
    """The caller's ``axes`` in upper case, checked: known letters, each at most once."""
    if not isinstance(axes, str) or not axes:
        raise BiosegError(f"{path}: axes={axes!r} must be a string of axis letters, e.g. 'ZCYX'")
    upper = axes.upper()
    unknown = sorted({a for a in upper if a not in _CALLER_AXES})
    if unknown or len(set(upper)) != len(upper):
        raise BiosegError(
            f"{path}: axes='{axes}' must use each of the letters C (channel), Z, Y, X (and T for a single "
            f"time point) at most once, e.g. 'ZCYX' or 'CZYX'"
        )
    return upper


def _drop_singletons(array: np.ndarray, axes: str, spatial_dims: int) -> tuple[np.ndarray, str]:
    """Drop a single time point, and a single plane of a 2D image."""
    droppable = "TZ" if spatial_dims == 2 else "T"
    keep = [i for i, a in enumerate(axes) if not (a in droppable and array.shape[i] == 1)]
    if len(keep) == array.ndim:
        return array, axes
    dropped = tuple(i for i in range(array.ndim) if i not in keep)
    return np.squeeze(array, axis=dropped), "".join(axes[i] for i in keep)


def _channels_first(
    array: np.ndarray, axes: str | None, spatial_dims: int, path: Path, *, trusted: bool = False
) -> np.ndarray:
    """``array`` as ``(C, *spatial)`` with ``len(spatial) == spatial_dims``.

    ``trusted`` axes (the caller's, or NGFF names) are taken as they are; otherwise they are
    tifffile's reading of the file, which may be placeholders (``Q``, ``I``) and is combined with
    the shape rules of the module docstring.
    """
    if spatial_dims not in (2, 3):
        raise BiosegError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if axes is not None and len(axes) != array.ndim:
        if trusted:
            raise ImageReadError(
                path, f"has shape {tuple(array.shape)} but axes '{axes}' name {len(axes)} axes: give one "
                "letter per stored axis"
            )
        axes = None
    if axes is not None:
        array, axes = _drop_singletons(array, axes, spatial_dims)
    if trusted:
        return _by_named_axes(array, axes, spatial_dims, path)
    return _by_shape(array, axes, spatial_dims, path)


def _by_shape(array: np.ndarray, axes: str | None, spatial_dims: int, path: Path) -> np.ndarray:
    """``(C, *spatial)`` from tifffile's axes (possibly placeholders, or None) and the shape rules."""
    shape = tuple(array.shape)
    want = "(Y, X)" if spatial_dims == 2 else "(Z, Y, X)"
    shown = f"shape {shape}" + (f", axes {axes}" if axes else "")

    if array.ndim < spatial_dims:
        raise ImageReadError(path, f"has {shown}; a {spatial_dims}D image needs at least {want}")
    if array.ndim == spatial_dims:
        # in 3D only a named channel axis or interleaved samples (RGB) make it 2D; tifffile also says
        # "S" for a plain 3D array stored as planar samples, which is a stack like any other
        if spatial_dims == 2 or axes is None or not ("C" in axes or axes.endswith("S")):
            return array[None]
        raise ImageReadError(
            path, f"has {shown}: it is a 2D image with channels, not a volume; volumes must be {want} "
            "(use spatial_dims 2 for 2D data)"
        )
    if array.ndim > spatial_dims + 1:
        raise ImageReadError(
            path, f"has {shown}; a {spatial_dims}D image must be {want}, with at most one channel axis "
            "(time series and multi-position files are not supported: save one file per image)"
        )

    channel_axis = _extra_axis_as_channels(shape, axes, spatial_dims, path, shown, want)
    return np.ascontiguousarray(np.moveaxis(array, channel_axis, 0))


def _extra_axis_as_channels(
    shape: tuple[int, ...], axes: str | None, spatial_dims: int, path: Path, shown: str, want: str
) -> int:
    """For an array with one axis more than the spatial ones: the index of the channel axis, from the
    metadata or, for 2D images only, the shape; an ImageReadError where neither tells."""
    channel_axis = _channel_axis_from_metadata(axes)
    if axes is not None and "T" in axes:
        raise ImageReadError(
            path, f"has {shown}; a {spatial_dims}D image must be {want} with an optional channel axis "
            "(time series are not supported: save one file per time point)"
        )
    if channel_axis is None and axes is not None and spatial_dims == 2 and "Z" in axes:
        raise ImageReadError(
            path, f"has {shown}: it is a 3D stack of {shape[axes.index('Z')]} planes, and 2D images "
            "are expected; for volumes use model.spatial_dims: 3, or save each plane as its own file"
        )
    if channel_axis is None and spatial_dims == 3:
        # (2, 5, Y, X) may be 2 channels of 5 planes or 5 channels of 2 planes: no guessing
        raise ImageReadError(
            path, f"has {shown} and the file does not say which axis holds channels: a 4D volume may be "
            "(C, Z, Y, X) or (Z, C, Y, X); set data.axes (e.g. 'CZYX' or 'ZCYX'), pass axes= to "
            "read_image, or save it with axes metadata (bioseg.io.write_tiff(path, array, axes='CZYX'))"
        )
    if channel_axis is None:
        channel_axis = _channel_axis_from_shape(shape)
    if channel_axis is None:
        raise ImageReadError(
            path,
            f"has {shown} and no channel axis can be told apart: a 2D image must be {want}, "
            f"or have a first or last channel axis of at most {_MAX_HEURISTIC_CHANNELS} that is smaller "
            "than the others. If it is a volume use model.spatial_dims: 3; if it has more channels, "
            "save it with axes metadata (bioseg.io.write_tiff(path, array, axes='CYX'))",
        )
    return channel_axis


def _by_named_axes(array: np.ndarray, axes: str, spatial_dims: int, path: Path) -> np.ndarray:
    """Transpose by axis names: channel axis (``C`` or ``S``) first, then ``Z``, ``Y``, ``X``."""
    shape = tuple(array.shape)
    shown = f"shape {shape}, axes {axes}"
    spatial = "YX" if spatial_dims == 2 else "ZYX"
    channels = [i for i, a in enumerate(axes) if a in _CHANNEL_AXES]
    if "T" in axes:
        raise ImageReadError(
            path, f"has {shown}: time series are not supported; save one file per time point"
        )
    if spatial_dims == 2 and "Z" in axes:
        raise ImageReadError(
            path, f"has {shown}: it is a 3D stack of {shape[axes.index('Z')]} planes, and 2D images "
            "are expected; for volumes use model.spatial_dims: 3, or save each plane as its own file"
        )
    missing = [a for a in spatial if a not in axes]
    if missing == ["Z"] and channels:
        raise ImageReadError(
            path, f"has {shown}: it is a 2D image with channels, not a volume; volumes must be "
            "(Z, Y, X) (use spatial_dims 2 for 2D data)"
        )
    if missing:
        raise ImageReadError(
            path, f"has {shown}: a {spatial_dims}D image needs the axes {', '.join(spatial)}; "
            f"{', '.join(missing)} is missing"
        )
    other = [a for a in axes if a not in spatial and a not in _CHANNEL_AXES]
    if other or len(channels) > 1:
        raise ImageReadError(
            path, f"has {shown}: a {spatial_dims}D image may only have the axes {', '.join(spatial)} and "
            "one channel axis C; save one file per image"
        )
    order = channels + [axes.index(a) for a in spatial]
    out = np.transpose(array, order)
    return np.ascontiguousarray(out if channels else out[None])


def _channel_axis_from_metadata(axes: str | None) -> int | None:
    if axes is None:
        return None
    found = [i for i, a in enumerate(axes) if a in _CHANNEL_AXES]
    return found[0] if len(found) == 1 else None


def _channel_axis_from_shape(shape: tuple[int, ...]) -> int | None:
    def smallest(i: int) -> bool:
        others = [s for j, s in enumerate(shape) if j != i]
        return shape[i] <= _MAX_HEURISTIC_CHANNELS and all(shape[i] < s for s in others)

    if smallest(len(shape) - 1):
        return len(shape) - 1
    if smallest(0):
        return 0
    return None
