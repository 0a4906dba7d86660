"""Writing images: TIFF (ImageJ hyperstack or OME-TIFF, with axes and voxel size) and PNG."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from bioseg.errors import BiosegError
from bioseg.io.voxel_size import VoxelSize

_IMAGEJ_DTYPES = (np.uint8, np.int16, np.uint16, np.float32)
_IMAGEJ_ORDER = "TZCYXS"


def write_tiff(
    path: str | Path,
    array: np.ndarray,
    axes: str | None = None,
    voxel_size: tuple[float, ...] | None = None,
) -> Path:
    """Write a float or integer array as a zlib-compressed TIFF; parent folders are created.

    ``axes`` (tifffile letters, e.g. ``"CYX"``, ``"ZYX"``, ``"CZYX"``) is stored in the file so
    that ``read_image`` finds the channel axis without guessing; give it for anything that is not
    plain ``(Y, X)``. Without it, a ``(Y, X, 3|4)`` uint8/uint16 array is stored as RGB(A).

    ``voxel_size`` is ``(z, y, x)`` (or ``(y, x)``) in micrometres. Volumes (axes with ``Z``) and
    files with a voxel size are written as ImageJ hyperstacks when ImageJ can hold the dtype
    (uint8, int16, uint16, float32), with the axes put in ImageJ's ``TZCYX`` order, so Fiji opens
    them with the right axes and calibration; other dtypes with a voxel size are written as
    OME-TIFF. ``read_voxel_size`` reads the size back from either.
    """
    import tifffile

    path = Path(path)
    array, axes = _check_array(array, axes, path)
    voxel = _check_voxel_size(voxel_size, path) if voxel_size is not None else None
    array, kwargs = _tiff_layout(array, axes, voxel, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array, **kwargs)
    return path


def _check_array(array: np.ndarray, axes: str | None, path: Path) -> tuple[np.ndarray, str | None]:
    """A writable array (bool as uint8) and its axes in upper case, one letter per dimension."""
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise BiosegError(
            f"write_tiff: cannot write dtype {array.dtype} to {path}; use an integer or float array"
        )
    if array.ndim < 2:
        raise BiosegError(f"write_tiff: {path} needs at least 2 dimensions, got shape {array.shape}")
    if axes is not None:
        axes = axes.upper()
        if len(axes) != array.ndim:
            raise BiosegError(
                f"write_tiff: axes '{axes}' has {len(axes)} letters but the array has shape {array.shape}"
            )
    return array, axes


def _tiff_layout(
    array: np.ndarray, axes: str | None, voxel: VoxelSize | None, path: Path
) -> tuple[np.ndarray, dict]:
    """The array as it is stored and the ``tifffile.imwrite`` arguments: an ImageJ hyperstack where ImageJ
    can hold it, else OME-TIFF for a voxel size, else a plain TIFF with the axes in its metadata."""
    rgb = array.ndim == 3 and array.shape[-1] in (3, 4) and array.dtype in (np.uint8, np.uint16)
    bigtiff = array.nbytes > 2**32 - 2**25
    named = axes if axes is not None else "YX" if array.ndim == 2 else "YXS" if rgb else None
    if named is None and voxel is not None:
        if array.ndim != 3:
            raise BiosegError(
                f"write_tiff: {path} has shape {array.shape}; give axes (e.g. 'CZYX') with a voxel size"
            )
        named = "ZYX"

    imagej = named is not None and (voxel is not None or "Z" in named) and _imagej_can_hold(array, named)
    if imagej and not bigtiff:  # ImageJ hyperstacks are classic TIFF (< 4 GiB)
        array, kwargs = _imagej_layout(array, named, voxel)
    elif voxel is not None:
        array = _ome_dtype(array, path)
        kwargs = _ome_layout(named, voxel, bigtiff)
    elif axes is not None:
        kwargs = {"metadata": {"axes": axes}, "bigtiff": bigtiff, "photometric": _photometric(axes)}
    else:
        kwargs = {"bigtiff": bigtiff, "photometric": "rgb" if rgb else "minisblack"}
    kwargs["compression"] = "zlib"
    if kwargs["photometric"] == "rgb" and array.shape[-1] == 4:
        kwargs["extrasamples"] = ("unassalpha",)
    return array, kwargs


def _imagej_layout(array: np.ndarray, named: str, voxel: VoxelSize | None) -> tuple[np.ndarray, dict]:
    """The axes put in ImageJ's TZCYXS order, the voxel size as ImageJ's spacing and resolution."""
    order = sorted(range(array.ndim), key=lambda i: _IMAGEJ_ORDER.index(named[i]))
    array, named = np.transpose(array, order), "".join(named[i] for i in order)
    metadata: dict = {"axes": named}
    kwargs: dict = {}
    if voxel is not None:
        metadata.update(spacing=voxel[0], unit="um")
        kwargs["resolution"] = (1.0 / voxel[2], 1.0 / voxel[1])
    kwargs.update(imagej=True, metadata=metadata, photometric=_photometric(named))
    return array, kwargs


def _ome_layout(named: str, voxel: VoxelSize, bigtiff: bool) -> dict:
    """OME-TIFF arguments with the physical pixel size (and the plane spacing of a volume) in µm."""
    metadata = {"axes": named, "PhysicalSizeY": voxel[1], "PhysicalSizeX": voxel[2]}
    metadata.update(PhysicalSizeYUnit="µm", PhysicalSizeXUnit="µm")
    if "Z" in named:
        metadata.update(PhysicalSizeZ=voxel[0], PhysicalSizeZUnit="µm")
    return {"ome": True, "metadata": metadata, "bigtiff": bigtiff, "photometric": _photometric(named)}


def _photometric(axes: str) -> str:
    # tifffile's 'S' axis holds the samples of an RGB(A) pixel
    return "rgb" if axes.endswith("S") else "minisblack"


def _check_voxel_size(voxel_size: tuple[float, ...], path: Path) -> VoxelSize:
    try:
        values = tuple(float(v) for v in voxel_size)
    except (TypeError, ValueError):
        values = ()
    if len(values) not in (2, 3) or not all(math.isfinite(v) and v > 0 for v in values):
        raise BiosegError(
            f"{path}: voxel_size={voxel_size!r} must be (z, y, x) or (y, x) positive sizes in micrometres, "
            "e.g. (0.5, 0.2, 0.2)"
        )
    return values if len(values) == 3 else (1.0, *values)


def _imagej_can_hold(array: np.ndarray, axes: str) -> bool:
    """Whether an ImageJ hyperstack can hold ``array`` once its axes are put in TZCYXS order."""
    if array.dtype not in _IMAGEJ_DTYPES or any(a not in _IMAGEJ_ORDER for a in axes):
        return False
    if len(set(axes)) != len(axes) or "Y" not in axes or "X" not in axes:
        return False
    return "S" not in axes or (array.dtype == np.uint8 and array.shape[axes.index("S")] in (3, 4))


def _ome_dtype(array: np.ndarray, path: Path) -> np.ndarray:
    """OME-TIFF has no 64-bit integers and no float16: narrow them when no value changes."""
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if array.dtype.itemsize == 8 and np.issubdtype(array.dtype, np.integer):
        lo, hi = (int(array.min()), int(array.max())) if array.size else (0, 0)
        for dtype in (np.uint32, np.int32):
            if np.iinfo(dtype).min <= lo and hi <= np.iinfo(dtype).max:
                return array.astype(dtype)
        raise BiosegError(
            f"write_tiff: {path} holds values from {lo} to {hi}, which OME-TIFF cannot store (no 64-bit "
            "integers); write it without voxel_size or use write_ome_zarr"
        )
    return array


def write_png(path: str | Path, array: np.ndarray) -> Path:
    """Write ``(Y, X)`` uint8/uint16 or ``(Y, X, 3|4)`` uint8 as PNG; parent folders are created.

    16-bit colour PNGs are refused (the PNG writer at hand cannot store them): use ``write_tiff``.
    """
    from PIL import Image

    path = Path(path)
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.dtype not in (np.uint8, np.uint16):
        raise BiosegError(
            f"write_png: {path} would get dtype {array.dtype}; PNG holds uint8 or uint16: "
            "scale and cast the array, or use write_tiff for other types"
        )
    colour = array.ndim == 3 and array.shape[-1] in (3, 4)
    if not (array.ndim == 2 or colour):
        raise BiosegError(
            f"write_png: {path} would get shape {array.shape}; PNG holds (Y, X) or (Y, X, 3|4): "
            "use write_tiff for other shapes"
        )
    if colour and array.dtype == np.uint16:
        raise BiosegError(f"write_png: {path} is 16-bit colour, which is not supported; use write_tiff")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path)
    return path
