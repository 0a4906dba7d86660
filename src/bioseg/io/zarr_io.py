"""OME-Zarr (NGFF) images and label images through the ome-zarr library (extra ``bioseg[zarr]``).

Reading takes level 0 of the multiscale image, its axes (NGFF names → tifffile letters) and the scale
of its coordinate transformations. Writing makes a real NGFF store: the image with its axes, units and
voxel size, optional downsampled levels, and label images under ``labels/<name>``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from bioseg.errors import BiosegError
from bioseg.io.errors import ImageReadError
from bioseg.io.voxel_size import VoxelSize, um_per_unit

_NGFF_ORDER = "TCZYX"  # NGFF stores axes as [t][c][z]yx


def _require() -> None:
    try:
        import ome_zarr  # noqa: F401
        import zarr  # noqa: F401
    except ImportError:
        raise BiosegError(
            "OME-Zarr files need the zarr extra, which is not installed: pip install 'bioseg[zarr]'"
        ) from None


def _node(root: Path, inner: str) -> Any:
    """The ome-zarr reader node of the multiscale image at ``root/inner``."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    if not root.exists():
        raise ImageReadError(root, "does not exist")
    wanted = (root / inner if inner else root).resolve()
    # label images are best reached through the root, where the reader finds the image they label;
    # an image inside a plain group (store.zarr/raw) is read where it is
    places = [(root, wanted)] + ([(wanted, wanted)] if inner else [])
    for place, target in places:
        location = parse_url(str(place))
        if location is None:  # not a zarr group: maybe a plain array, or not zarr at all
            continue
        try:
            for node in Reader(location)():
                if Path(node.zarr.subpath("")).resolve() == target and node.data:
                    return node
        except Exception as err:  # the reader raises many types for damaged stores
            raise ImageReadError(place, f"cannot be read as OME-Zarr ({_short(err)}): re-export it") from None
    return None


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:200]


def _axis_letter(axis: Any) -> str:
    """NGFF axis (a dict, or a bare name in NGFF 0.3) → tifffile letter."""
    name = axis.get("name", "") if isinstance(axis, dict) else str(axis)
    kind = axis.get("type") if isinstance(axis, dict) else None
    if name.lower() in ("c", "t", "z", "y", "x"):
        return name.upper()
    return {"channel": "C", "time": "T"}.get(kind or "", "Q")


def _node_axes(node: Any) -> str | None:
    axes = node.metadata.get("axes")
    return "".join(_axis_letter(a) for a in axes) if axes else None


def load_zarr(root: Path, inner: str) -> tuple[np.ndarray, str | None]:
    """``(array, axes)`` of level 0 of the OME-Zarr image at ``root/inner``.

    A store without NGFF metadata that holds a plain zarr array is read as it is, without axes.
    """
    _require()
    node = _node(root, inner)
    if node is not None:
        return np.asarray(node.data[0]), _node_axes(node)
    import zarr

    where = root / inner if inner else root
    try:
        found = zarr.open(str(where), mode="r")
    except Exception:
        found = None
    if isinstance(found, zarr.Array):
        return np.asarray(found[...]), None
    raise ImageReadError(
        where,
        "holds no OME-Zarr image (no NGFF multiscales metadata) and is not a zarr array: it is "
        "damaged or not zarr; write it with bioseg.io.write_ome_zarr, or give the path of the image "
        "group inside the store",
    )


def ome_zarr_voxel_size(root: Path, inner: str) -> VoxelSize | None:
    """``(z, y, x)`` in micrometres from the scale of level 0, or None without one."""
    _require()
    node = _node(root, inner)
    if node is None:
        return None
    axes = node.metadata.get("axes") or []
    transforms = node.metadata.get("coordinateTransformations") or []
    scale = next((t.get("scale") for t in (transforms[0] if transforms else []) if t.get("type") == "scale"), None)
    if not axes or scale is None or len(scale) != len(axes):
        return None
    sizes: dict[str, float] = {}
    units = []
    for axis, value in zip(axes, scale, strict=True):
        letter = _axis_letter(axis)
        if letter in "ZYX":
            unit = axis.get("unit") if isinstance(axis, dict) else None
            factor = um_per_unit(unit)
            if factor is None:
                return None
            sizes[letter] = float(value) * factor
            units.append(unit)
    if "Y" not in sizes or "X" not in sizes:
        return None
    if not any(units) and all(v == 1.0 for v in sizes.values()):
        return None  # NGFF requires a scale: 1 without a unit is a placeholder, not a calibration
    return (sizes.get("Z", 1.0), sizes["Y"], sizes["X"])


def read_ome_zarr_labels(path: str | Path, name: str) -> np.ndarray:
    """The label image ``labels/<name>`` of an OME-Zarr store, as ``(Z, Y, X)`` (or ``(Y, X)``) integers.

    Level 0; single time points and channels are dropped; the stored integer dtype is kept.
    """
    _require()
    root = Path(path)
    node = _node(root, f"labels/{name}")
    if node is None:
        raise BiosegError(
            f"{root} has no label image '{name}'; it has {', '.join(_label_names(root)) or 'none'}: "
            "pass one of those names, or write labels with write_ome_zarr(..., labels={name: array})"
        )
    array = np.asarray(node.data[0])
    axes = _node_axes(node) or ""
    keep = [i for i, a in enumerate(axes) if not (a in "TC" and array.shape[i] == 1)]
    if len(axes) == array.ndim and len(keep) < array.ndim:
        array = np.squeeze(array, axis=tuple(i for i in range(array.ndim) if i not in keep))
    if not np.issubdtype(array.dtype, np.integer):
        raise BiosegError(f"{root}/labels/{name} has dtype {array.dtype}; label images must hold integers")
    return array


def _label_names(root: Path) -> list[str]:
    import zarr

    try:
        group = zarr.open_group(str(root / "labels"), mode="r")
        return sorted(group.group_keys())
    except Exception:
        return []


def write_ome_zarr(
    path: str | Path,
    array: np.ndarray,
    axes: str | None = None,
    voxel_size: tuple[float, ...] | None = None,
    labels: dict[str, np.ndarray] | None = None,
    *,
    scale_factors: tuple[int, ...] = (),
    chunks: tuple[int, ...] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``array`` as an OME-Zarr image, with optional label images under ``labels/<name>``.

    Args:
        path: the store to create (a folder, by convention ending in ``.zarr``).
        array: ``(C, Z, Y, X)``, ``(Z, Y, X)``, ``(C, Y, X)`` or ``(Y, X)``; other layouts need ``axes``.
        axes: letters among ``T C Z Y X`` naming the array's axes, in any order (stored in NGFF order).
            Default: ``ZYX`` for 3D and ``CZYX`` for 4D arrays, ``YX`` for 2D.
        voxel_size: ``(z, y, x)`` (or ``(y, x)``) in micrometres, stored as the level-0 scale.
        labels: name → integer labels shaped like the image's spatial axes (``(Z, Y, X)``).
        scale_factors: extra levels downsampled in y and x by these factors, e.g. ``(2, 4)``;
            level 0 is always full resolution.
        chunks: chunk shape for the stored axes (in NGFF order); default one channel and up to
            ``64 × 256 × 256`` voxels.
        overwrite: replace an existing store at ``path``; without it an existing path is an error.

    Returns:
        ``path``.
    """
    _require()
    import dask.array as da
    import zarr
    from ome_zarr.writer import write_image

    path = Path(path)
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    named = _axes_for(array, axes, path)
    order = sorted(range(array.ndim), key=lambda i: _NGFF_ORDER.index(named[i]))
    array, named = np.transpose(array, order), "".join(named[i] for i in order)
    spatial = "".join(a for a in named if a in "ZYX")
    spatial_shape = tuple(array.shape[named.index(a)] for a in spatial)
    scale = _scale(voxel_size, spatial, path)
    chunks = _chunks_for(array.shape, named, chunks, path)
    label_arrays = _check_label_images(labels, spatial, spatial_shape, path)
    if path.exists() and not overwrite:
        raise BiosegError(f"{path} already exists; remove it or pass overwrite=True to replace it")

    units = {a.lower(): "micrometer" for a in spatial} if voxel_size is not None else None
    factors = [dict.fromkeys(("y", "x"), int(f)) for f in scale_factors]
    group = zarr.open_group(str(path), mode="w")
    dask_image = da.from_array(array, chunks=chunks)
    write_image(
        dask_image, group, axes=named.lower(), scale_factors=factors, scale=_scale_dict(named, scale), axes_units=units
    )
    label_chunks = tuple(c for c, a in zip(chunks, named, strict=True) if a in "ZYX")
    _write_label_images(group, label_arrays, spatial, label_chunks, factors, _scale_dict(spatial, scale), units)
    return path


def _write_label_images(
    group: Any,
    label_arrays: dict[str, np.ndarray],
    spatial: str,
    chunks: tuple[int, ...],
    factors: list[dict[str, int]],
    scale: dict[str, float],
    units: dict[str, str] | None,
) -> None:
    """Each label image under ``labels/<name>`` with the image's spatial axes, scale and levels."""
    import dask.array as da
    from ome_zarr.writer import write_labels

    for name, lab in label_arrays.items():
        write_labels(
            da.from_array(lab, chunks=chunks),
            group,
            name,
            scaler=None,
            axes=spatial.lower(),
            scale_factors=factors,
            scale=scale,
            axes_units=units,
            label_metadata={"source": {"image": "../../"}},
        )  # NGFF: the image it labels


def _chunks_for(
    shape: tuple[int, ...], named: str, chunks: tuple[int, ...] | None, path: Path
) -> tuple[int, ...]:
    """The caller's chunk shape, checked; default one channel and time point, up to 64 × 256 × 256 voxels."""
    if chunks is None:
        limits = {"T": 1, "C": 1, "Z": 64, "Y": 256, "X": 256}
        return tuple(min(s, limits[a]) for s, a in zip(shape, named, strict=True))
    if len(chunks) != len(shape):
        raise BiosegError(f"{path}: chunks={chunks!r} must give one size per axis of {named}")
    return chunks


def _check_label_images(
    labels: dict[str, np.ndarray] | None, spatial: str, spatial_shape: tuple[int, ...], path: Path
) -> dict[str, np.ndarray]:
    """The label images as integer arrays (bool as uint8), each shaped like the image's spatial axes."""
    label_arrays = {}
    for name, lab in (labels or {}).items():
        lab = np.asarray(lab)
        if lab.dtype == bool:
            lab = lab.astype(np.uint8)
        if tuple(lab.shape) != spatial_shape or not np.issubdtype(lab.dtype, np.integer):
            raise BiosegError(
                f"{path}: label image '{name}' has shape {tuple(lab.shape)} and dtype {lab.dtype}; it must "
                f"be integers shaped like the image's {spatial} axes, {spatial_shape}"
            )
        label_arrays[name] = lab
    return label_arrays


def _axes_for(array: np.ndarray, axes: str | None, path: Path) -> str:
    if axes is None:
        default = {2: "YX", 3: "ZYX", 4: "CZYX"}.get(array.ndim)
        if default is None:
            raise BiosegError(f"{path}: an array of shape {array.shape} needs axes, e.g. axes='TCZYX'")
        return default
    named = axes.upper()
    if len(named) != array.ndim or len(set(named)) != len(named) or any(a not in _NGFF_ORDER for a in named):
        raise BiosegError(
            f"{path}: axes='{axes}' must name each of the {array.ndim} axes of shape {array.shape} once, "
            "with letters among T, C, Z, Y, X (e.g. 'CZYX')"
        )
    if "Y" not in named or "X" not in named:
        raise BiosegError(f"{path}: axes='{axes}' must include Y and X")
    return named


def _scale(voxel_size: tuple[float, ...] | None, spatial: str, path: Path) -> dict[str, float]:
    if voxel_size is None:
        return {}
    values = tuple(float(v) for v in voxel_size)
    if len(values) == 2 and len(spatial) == 3:
        values = (1.0, *values)
    if len(values) == 3 and len(spatial) == 2:
        values = values[1:]
    if len(values) != len(spatial) or not all(math.isfinite(v) and v > 0 for v in values):
        raise BiosegError(
            f"{path}: voxel_size={voxel_size!r} must be positive sizes in micrometres for the {spatial} axes"
        )
    return dict(zip(spatial, values, strict=True))


def _scale_dict(axes: str, scale: dict[str, float]) -> dict[str, float]:
    return {a.lower(): scale.get(a, 1.0) for a in axes}


def add_ome_zarr_labels(path: str | Path, labels: dict[str, np.ndarray]) -> Path:
    """Write label images into an existing OME-Zarr image store under ``labels/<name>`` (a label of the
    same name is replaced), with the image's axes and level-0 scale, via ome-zarr's writer."""
    _require()
    import shutil

    import dask.array as da
    import zarr
    from ome_zarr.writer import write_labels

    path = Path(path)
    if not path.is_dir():
        raise BiosegError(f"{path} is not an OME-Zarr store")
    image, axes = load_zarr(path, "")
    axes = axes or "CZYX"[-image.ndim :]
    spatial = "".join(a for a in axes if a in "ZYX")
    spatial_shape = tuple(image.shape[axes.index(a)] for a in spatial)
    voxel = ome_zarr_voxel_size(path, "")
    scale = _scale_dict(spatial, _scale(tuple(voxel)[-len(spatial) :] if voxel else None, spatial, path))
    group = zarr.open_group(str(path), mode="r+")
    for name, lab in labels.items():
        lab = np.asarray(lab)
        if tuple(lab.shape) != spatial_shape:
            raise BiosegError(f"{path}: label '{name}' has shape {lab.shape}, the image's {spatial} is {spatial_shape}")
        if (path / "labels" / name).exists():
            shutil.rmtree(path / "labels" / name)
        write_labels(
            da.from_array(lab),
            group,
            name,
            scaler=None,
            axes=spatial.lower(),
            scale=scale,
            label_metadata={"source": {"image": "../../"}},
        )
    _dedupe_label_list(zarr.open_group(str(path / "labels"), mode="r+"))
    return path


def _dedupe_label_list(labels_group: Any) -> None:
    """ome-zarr appends a label's name to the list each time it is written: keep each name once."""
    attrs = labels_group.attrs.asdict()
    holder = attrs.get("ome", attrs)
    names = holder.get("labels", [])
    unique = list(dict.fromkeys(names))
    if unique != names:
        holder["labels"] = unique
        labels_group.attrs.update(attrs)
