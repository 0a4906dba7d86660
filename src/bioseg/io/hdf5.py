"""HDF5 datasets through h5py (extra ``bioseg[hdf5]``).

The dataset is named by the caller (``file.h5/group/raw`` or ``dataset="group/raw"``) or is the only
dataset in the file. Axes come from an ``axes`` attribute (``"zyx"``, ``["c", "z", "y", "x"]``) or
ilastik's ``axistags``; voxel size from ``element_size_um`` or ``resolution``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bioseg.errors import BiosegError
from bioseg.io.errors import ImageReadError
from bioseg.io.voxel_size import VoxelSize, _voxel


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise BiosegError(
            "HDF5 files need the hdf5 extra, which is not installed: pip install 'bioseg[hdf5]'"
        ) from None
    return h5py


def _open(path: Path) -> Any:
    h5py = _h5py()
    if not path.exists():
        raise ImageReadError(path, "does not exist")
    if not path.is_file():
        raise ImageReadError(path, "is not a file")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise ImageReadError(path, f"cannot be read as HDF5 ({reason}): re-export it") from None


def _datasets(handle: Any) -> list[str]:
    h5py = _h5py()
    found: list[str] = []
    handle.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    return found


def _dataset(handle: Any, path: Path, name: str | None) -> Any:
    h5py = _h5py()
    names = _datasets(handle)
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    if name is None:
        if len(names) == 1:
            return handle[names[0]]
        if not names:
            raise ImageReadError(path, "holds no dataset")
        raise ImageReadError(
            path,
            f"holds {len(names)} datasets ({shown}); name one, as {path}/{names[0]} or dataset='{names[0]}'",
        )
    obj = handle.get(name.strip("/"))
    if not isinstance(obj, h5py.Dataset):
        raise ImageReadError(path, f"has no dataset '{name}'; it holds {shown or 'no datasets'}")
    return obj


def _axes(attrs: Any) -> str | None:
    """Axis letters from an ``axes`` attribute or ilastik's ``axistags`` JSON, if present."""
    raw = attrs.get("axes")
    if raw is None and "axistags" in attrs:
        try:
            tags = json.loads(attrs["axistags"])
            raw = [a["key"] for a in tags["axes"]]
        except (ValueError, KeyError, TypeError):
            raw = None
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode()
    letters = "".join(str(a.decode() if isinstance(a, bytes) else a) for a in np.atleast_1d(raw))
    return letters.upper() or None


def load_hdf5(path: Path, dataset: str | None) -> tuple[np.ndarray, str | None]:
    """``(array, axes)`` of one dataset; axes are None when the dataset has no axes attribute."""
    with _open(path) as handle:
        obj = _dataset(handle, path, dataset)
        where = Path(f"{path}/{obj.name.lstrip('/')}")
        if obj.dtype.kind not in "biuf":
            raise ImageReadError(where, f"has dtype {obj.dtype}; images must hold numbers")
        return np.asarray(obj[()]), _axes(obj.attrs)


def hdf5_voxel_size(path: Path, dataset: str | None) -> VoxelSize | None:
    """``(z, y, x)`` from ``element_size_um`` or ``resolution`` on the dataset or, failing that, the file."""
    with _open(path) as handle:
        obj = _dataset(handle, path, dataset)
        for attrs in (obj.attrs, handle.attrs):
            for key in ("element_size_um", "resolution"):
                if key in attrs:
                    values = np.atleast_1d(np.asarray(attrs[key], dtype=float))
                    if values.size == 3:
                        return _voxel(*values)
                    if values.size == 2:
                        return _voxel(None, *values)
    return None
