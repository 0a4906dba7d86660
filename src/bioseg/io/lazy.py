"""Images read lazily, region by region: OME-Zarr (level 0) and plain zarr arrays, HDF5 datasets, TIFF
files (memory-mapped when stored contiguously, else through tifffile's zarr store).

:class:`LazyImage` holds only the path and how to read it, so that it pickles to dask workers on other
processes or machines; each read opens the file, takes the region and closes it. :meth:`LazyImage.dask`
gives the image as a dask array ``(C, *spatial)`` chunked like the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bioseg.errors import BiosegError
from bioseg.io.axes import _channel_axis_from_shape, _check_axes_letters
from bioseg.io.errors import ImageReadError
from bioseg.io.voxel_size import VoxelSize

_TIFF = (".tif", ".tiff")
_HDF5 = (".h5", ".hdf5")


@dataclass(frozen=True)
class LazyImage:
    """One image on disk seen as ``(C, *spatial)``: ``order`` permutes the stored axes into that layout
    (after ``squeeze``: stored singleton axes dropped; ``expand``: a channel axis of 1 added)."""

    kind: str  # "zarr", "hdf5", "tiff"
    path: str
    inner: str  # array path inside a zarr store, dataset of an HDF5 file, "" for a TIFF
    stored_shape: tuple[int, ...]
    stored_chunks: tuple[int, ...]
    dtype_name: str
    squeeze: tuple[int, ...]
    order: tuple[int, ...]
    expand: bool

    @property
    def shape(self) -> tuple[int, ...]:
        kept = [s for i, s in enumerate(self.stored_shape) if i not in self.squeeze]
        shape = tuple(kept[i] for i in self.order)
        return (1, *shape) if self.expand else shape

    @property
    def chunks(self) -> tuple[int, ...]:
        kept = [c for i, c in enumerate(self.stored_chunks) if i not in self.squeeze]
        chunks = tuple(kept[i] for i in self.order)
        return (1, *chunks) if self.expand else chunks

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.dtype_name)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        """The region ``key`` (slices of the ``(C, *spatial)`` layout) as a numpy array."""
        key = tuple(key) + (slice(None),) * (self.ndim - len(tuple(key)))
        if self.expand:
            key = key[1:]
        kept = [i for i in range(len(self.stored_shape)) if i not in self.squeeze]
        stored: list[Any] = [0] * len(self.stored_shape)
        for position, axis in enumerate(self.order):
            stored[kept[axis]] = key[position]
        array = self._read(tuple(stored))  # the singleton axes went with their integer index
        array = np.transpose(array, self.order)
        return array[None] if self.expand else array

    def _read(self, key: tuple) -> np.ndarray:
        if self.kind == "zarr":
            import zarr

            return np.asarray(zarr.open_array(str(Path(self.path) / self.inner), mode="r")[key])
        if self.kind == "hdf5":
            from bioseg.io.hdf5 import _open

            with _open(Path(self.path)) as handle:
                return np.asarray(handle[self.inner][key])
        import tifffile

        try:
            return np.asarray(tifffile.memmap(self.path, mode="r")[key])
        except ValueError:  # compressed or tiled: tifffile's zarr store reads only the chunks needed
            import zarr

            with tifffile.imread(self.path, aszarr=True) as store:
                return np.asarray(zarr.open_array(store, mode="r")[key])

    def dask(self) -> Any:
        """The image as a lazy dask array ``(C, *spatial)``, chunked like the file."""
        import dask.array as da

        return da.from_array(self, chunks=self.chunks, meta=np.empty((0,) * self.ndim, self.dtype), lock=False)


def open_lazy(path: str | Path, spatial_dims: int, axes: str | None = None) -> tuple[LazyImage, VoxelSize | None]:
    """``(image, voxel size)`` of the image at ``path`` without reading its pixels. ``axes`` names the
    stored axes (letters among C Z Y X T) where the file does not; files with axis metadata need none."""
    from bioseg.io.images import _split_container, read_voxel_size

    path = Path(path)
    container = _split_container(path)
    if container is not None and container[0].suffix.lower() == ".zarr":
        image = _zarr_image(*container)
    elif container is not None:
        image = _hdf5_image(*container)
    elif path.suffix.lower() in _TIFF:
        image = _tiff_image(path)
    else:
        raise BiosegError(
            f"{path}: block-wise prediction reads OME-Zarr stores (.zarr), HDF5 datasets (.h5/.hdf5) and TIFF "
            "files; convert the image to one of them"
        )
    kind, where, inner, shape, chunks, dtype, found_axes = image
    named = _check_axes_letters(axes, path) if axes else found_axes
    squeeze, order, expand = _layout(shape, named, spatial_dims, path)
    lazy = LazyImage(kind, str(where), inner, shape, chunks, dtype, squeeze, order, expand)
    return lazy, read_voxel_size(path)


def _layout(
    shape: tuple[int, ...], axes: str | None, spatial_dims: int, path: Path
) -> tuple[tuple[int, ...], tuple[int, ...], bool]:
    """(stored axes to drop, order of the rest as channel + spatial, whether to add a channel axis)."""
    spatial = "ZYX"[-spatial_dims:]
    shown = f"shape {shape}" + (f", axes {axes}" if axes else "")
    if axes is not None and len(axes) == len(shape):
        droppable = "TZ" if spatial_dims == 2 else "T"
        squeeze = tuple(i for i, a in enumerate(axes) if a in droppable and shape[i] == 1)
        kept = "".join(a for i, a in enumerate(axes) if i not in squeeze)
        channels = [i for i, a in enumerate(kept) if a in "CS"]
        if any(a not in spatial and a not in "CS" for a in kept) or len(channels) > 1 or set(spatial) - set(kept):
            raise ImageReadError(path, f"has {shown}; a {spatial_dims}D image needs the axes {spatial} and "
                                       "at most one channel axis C")  # fmt: skip
        return squeeze, tuple(channels + [kept.index(a) for a in spatial]), not channels
    if len(shape) == spatial_dims:
        return (), tuple(range(spatial_dims)), True
    if len(shape) == spatial_dims + 1:
        channel = _channel_axis_from_shape(shape) if spatial_dims == 2 else None
        if channel is not None:
            return (), (channel, *[i for i in range(len(shape)) if i != channel]), False
    raise ImageReadError(path, f"has {shown} and does not say which axes are which: give axes, e.g. 'CZYX'")


def _zarr_image(root: Path, inner: str) -> tuple:
    """Level 0 of the OME-Zarr image at ``root/inner`` (its axes from the NGFF metadata), or a plain array."""
    from bioseg.io.zarr_io import _axis_letter, _require

    _require()
    import zarr

    where = root / inner if inner else root
    if not where.exists():
        raise ImageReadError(where, "does not exist")
    try:
        node = zarr.open(str(where), mode="r")
    except Exception as err:
        raise ImageReadError(where, f"cannot be read as zarr ({type(err).__name__}): re-export it") from None
    axes = None
    if isinstance(node, zarr.Group):
        attrs = node.attrs.asdict()
        multiscales = attrs.get("ome", attrs).get("multiscales")
        if not multiscales:
            raise ImageReadError(where, "holds no OME-Zarr image (no NGFF multiscales metadata): give the image group")
        level0 = multiscales[0]["datasets"][0]["path"]
        axes = "".join(_axis_letter(a) for a in multiscales[0].get("axes", [])) or None
        inner = f"{inner}/{level0}" if inner else level0
        node = node[level0]
    return "zarr", root, inner, tuple(node.shape), tuple(node.chunks), str(node.dtype), axes


def _hdf5_image(root: Path, inner: str) -> tuple:
    from bioseg.io.hdf5 import _axes, _dataset, _open

    with _open(root) as handle:
        data = _dataset(handle, root, inner or None)
        chunks = data.chunks or tuple(min(s, 256) for s in data.shape)
        return "hdf5", root, data.name, tuple(data.shape), tuple(chunks), str(data.dtype), _axes(data.attrs)


def _tiff_image(path: Path) -> tuple:
    import tifffile

    if not path.is_file():
        raise ImageReadError(path, "does not exist")
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype, axes = tuple(series.shape), str(series.dtype), series.axes
    except Exception as err:
        raise ImageReadError(path, f"cannot be read as a TIFF ({type(err).__name__}): re-export it") from None
    # a plane at a time: what a TIFF stores contiguously
    chunks = tuple(1 if i < len(shape) - 2 else s for i, s in enumerate(shape))
    named = axes if axes and all(a in "CSZYXT" for a in axes) else None
    return "tiff", path, "", shape, chunks, dtype, named


def describe(image: LazyImage) -> dict[str, Any]:
    """What identifies the image for a store's manifest: path, layout, shape and dtype."""
    return json.loads(json.dumps({"path": str(Path(image.path).resolve()), "inner": image.inner,
                                  "shape": list(image.shape), "dtype": image.dtype_name}))  # fmt: skip
