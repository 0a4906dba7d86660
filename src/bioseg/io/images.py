"""Read images and masks: TIFF (tifffile), PNG/JPEG (Pillow), OME-Zarr and HDF5 (writing: :mod:`bioseg.io.writing`).

Arrays come back channels-first, ``(C, *spatial)``, in the file's own dtype. Only the layout is
changed, never the values, so that normalisation and channel selection stay explicit later on.

How the channel axis is found (``spatial_dims=2``):

* PNG/JPEG are always ``(Y, X)`` or ``(Y, X, C)``: grey → C=1, grey+alpha → 2, RGB → 3, RGBA → 4.
* TIFF: the axes that tifffile reads from the file's metadata (ImageJ, OME, tifffile's own, or an
  RGB photometric tag) are trusted when they name the channel axis (``C`` or ``S``), or name a depth
  or time axis (``Z``/``T``), which a 2D reader refuses instead of taking the planes for channels.
* Without such metadata, a last axis of at most 4 that is smaller than the other two is channels
  (``(Y, X, C)``); else a first axis of at most 4 smaller than the others (``(C, Y, X)``). Anything
  else, such as a ``(32, 128, 128)`` stack, is refused: it is more likely a volume than 32 channels.
  Files with more than 4 channels need axes metadata, e.g. ``write_tiff(path, x, axes="CYX")``.

Volumes (``spatial_dims=3``) come back as ``(C, Z, Y, X)``; depth varies from file to file:

* A 3D array is ``(Z, Y, X)`` (C=1) unless its metadata says it is a 2D image with channels.
* A 4D array needs its channel axis named, by the file (ImageJ hyperstacks ``ZCYX``, OME-TIFF,
  tifffile's axes, NGFF axes) or by the caller (``axes="ZCYX"``): ``(2, 5, 64, 64)`` may be 2
  channels of 5 planes or 2 planes of 5 channels, so it is refused rather than guessed.

An explicit ``axes`` (letters among ``C S Z Y X T``, e.g. ``"ZCYX"``) overrides the file's metadata.
Axes of length 1 that are not needed (a single time point, a single plane in 2D) are dropped.

Containers: ``.zarr`` is read as OME-Zarr (level 0 of the multiscale image, axes and voxel size from the
NGFF metadata; ``store.zarr/labels/cells`` reads a label image) and needs ``bioseg[zarr]``;
``.h5``/``.hdf5`` take the dataset as ``file.h5/group/dataset`` or ``dataset=...`` (default: the only
dataset in the file) and need ``bioseg[hdf5]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bioseg.errors import BiosegError
from bioseg.io.axes import _channels_first, _check_axes_letters
from bioseg.io.errors import ImageReadError, _short
from bioseg.io.voxel_size import VoxelSize, _tiff_voxel_size
from bioseg.io.writing import write_png, write_tiff

__all__ = [
    "CONTAINER_SUFFIXES",
    "IMAGE_SUFFIXES",
    "ImageReadError",
    "VoxelSize",
    "detect_spatial_dims",
    "read_image",
    "read_mask",
    "read_voxel_size",
    "write_png",
    "write_tiff",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
CONTAINER_SUFFIXES = (".zarr", ".h5", ".hdf5")
_TIFF_SUFFIXES = (".tif", ".tiff")


# --- reading -------------------------------------------------------------------------------------


def read_image(
    path: str | Path, *, spatial_dims: int = 2, axes: str | None = None, dataset: str | None = None
) -> np.ndarray:
    """Read an image as ``(C, Y, X)`` (``spatial_dims=2``) or ``(C, Z, Y, X)`` (``spatial_dims=3``).

    The dtype is the file's own (uint8, uint16, float32, ...). See the module docstring for how
    the channel axis is found; ``axes`` names the stored axes and overrides the file's metadata;
    ``dataset`` picks the dataset of an HDF5 file. Raises ``ImageReadError`` (a BiosegError) naming
    the file when it is missing, empty, corrupt, of an unknown type or of a shape that cannot be
    read as asked.
    """
    path = Path(path)
    array, found_axes, trusted = _load(path, palette_as_indices=False, dataset=dataset)
    if axes is not None:
        found_axes, trusted = _check_axes_letters(axes, path), True
    return _channels_first(array, found_axes, spatial_dims, path, trusted=trusted)


def read_mask(
    path: str | Path, *, spatial_dims: int = 2, axes: str | None = None, dataset: str | None = None
) -> np.ndarray:
    """Read a label mask as ``(Y, X)`` (or ``(Z, Y, X)``) integers; the integer dtype is kept.

    Palette PNGs give their palette indices. An RGB(A) or grey+alpha mask whose colour channels are
    all equal is reduced to one channel; a mask with real colours raises an ``ImageReadError``
    (colours are not class indices). Bool masks become uint8; float masks holding whole numbers
    become int64; fractional values are an error. Instance labels above 255 keep their uint16/uint32
    dtype. ``axes`` and ``dataset`` are as for ``read_image``.
    """
    path = Path(path)
    array, found_axes, trusted = _load(path, palette_as_indices=True, dataset=dataset)
    if axes is not None:
        found_axes, trusted = _check_axes_letters(axes, path), True
    chw = _channels_first(array, found_axes, spatial_dims, path, trusted=trusted)
    mask = _single_channel(chw, path)
    return _integer_labels(mask, path)


def read_voxel_size(path: str | Path, *, dataset: str | None = None) -> VoxelSize | None:
    """Physical voxel size ``(z, y, x)`` in micrometres from the file's metadata, or None.

    Sources: OME-TIFF ``PhysicalSize*``; ImageJ TIFF resolution tags, ``unit`` and ``spacing`` (z);
    plain TIFF resolution tags in inch or centimetre; NGFF ``scale`` transforms of level 0 with their
    axis units; HDF5 attributes ``element_size_um`` or ``resolution``. A file that gives y and x but
    no z spacing (a single plane) gets z = 1.0, as ImageJ does. Files without calibration give None.
    """
    path = Path(path)
    container = _split_container(path)
    if container is not None:
        root, inner = container
        if root.suffix.lower() == ".zarr":
            from bioseg.io import zarr_io

            return zarr_io.ome_zarr_voxel_size(root, inner)
        from bioseg.io import hdf5

        return hdf5.hdf5_voxel_size(root, _hdf5_dataset(root, inner, dataset))
    _check_file(path)
    if path.suffix.lower() not in _TIFF_SUFFIXES:
        return None
    return _tiff_voxel_size(path)


def _split_container(path: Path) -> tuple[Path, str] | None:
    """``(container, inner path)`` when ``path`` is or lies inside a ``.zarr``/``.h5``/``.hdf5``."""
    if path.suffix.lower() in IMAGE_SUFFIXES:  # a TIFF in a folder that happens to be named x.zarr
        return None
    parts = path.parts
    for i, part in enumerate(parts):
        if Path(part).suffix.lower() in CONTAINER_SUFFIXES:
            return Path(*parts[: i + 1]), "/".join(parts[i + 1 :])
    return None


def _hdf5_dataset(root: Path, inner: str, dataset: str | None) -> str | None:
    if inner and dataset and inner.strip("/") != dataset.strip("/"):
        raise BiosegError(
            f"{root}/{inner}: the dataset is given twice, as '{inner}' in the path and as "
            f"dataset='{dataset}'; give it once"
        )
    return inner or dataset


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(path, "does not exist")
    if not path.is_file():
        raise ImageReadError(path, "is not a file")


def _load(
    path: Path, *, palette_as_indices: bool, dataset: str | None = None
) -> tuple[np.ndarray, str | None, bool]:
    """The stored array, its axes (tifffile letters) when the file says so, and whether they are
    explicit names (NGFF) rather than tifffile's reading of the file."""
    container = _split_container(path)
    if container is not None:
        root, inner = container
        if root.suffix.lower() == ".zarr":
            if dataset is not None:
                raise BiosegError(
                    f"{path}: dataset='{dataset}' is for HDF5 files; for a zarr store give the group in the "
                    "path, e.g. store.zarr/labels/cells"
                )
            from bioseg.io import zarr_io

            array, axes = zarr_io.load_zarr(root, inner)
            trusted = axes is not None
        else:
            from bioseg.io import hdf5

            array, axes = hdf5.load_hdf5(root, _hdf5_dataset(root, inner, dataset))
            trusted = axes is not None
        return _tidy(array, path), axes, trusted
    if dataset is not None:
        raise BiosegError(f"{path}: dataset='{dataset}' is only for HDF5 files (.h5, .hdf5)")

    _check_file(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ImageReadError(
            path,
            f"has suffix '{path.suffix}'; images must be one of "
            f"{', '.join(IMAGE_SUFFIXES + CONTAINER_SUFFIXES)}",
        )
    if path.stat().st_size == 0:
        raise ImageReadError(path, "is empty (0 bytes): re-export it or remove it")
    if suffix in _TIFF_SUFFIXES:
        array, axes = _load_tiff(path)
    else:
        array, axes = _load_pillow(path, palette_as_indices=palette_as_indices)
    return _tidy(array, path), axes, False


def _tidy(array: np.ndarray, path: Path) -> np.ndarray:
    if array.size == 0:
        raise ImageReadError(path, f"holds no pixels (shape {tuple(array.shape)}): re-export it or remove it")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def _load_tiff(path: Path) -> tuple[np.ndarray, str | None]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ImageReadError(path, "cannot be read as a TIFF (no image found in it): re-export it")
            series = tif.series[0]
            array = series.asarray()
            axes = series.axes
    except ImageReadError:
        raise
    except Exception as err:  # tifffile raises many types for damaged files; all mean "unreadable"
        raise ImageReadError(
            path, f"cannot be read as a TIFF ({_short(err)}): the file is damaged or not a TIFF; re-export it"
        ) from None
    return np.asarray(array), axes


def _load_pillow(path: Path, *, palette_as_indices: bool) -> tuple[np.ndarray, str | None]:
    from PIL import Image, UnidentifiedImageError

    kind = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    try:
        with Image.open(path) as im:
            # Pillow decodes 16-bit colour PNGs to 8 bits without a word: refuse rather than lose data.
            if im.mode in ("RGB", "RGBA", "LA") and any(";16" in str(t.args) for t in im.tile):
                raise ImageReadError(
                    path,
                    f"is a 16-bit {im.mode} PNG, which cannot be read without losing precision: "
                    "save it as a TIFF (or as 8-bit) instead",
                )
            im.load()
            if im.mode in ("P", "PA"):
                if palette_as_indices and im.mode == "P":
                    array = np.asarray(im)
                else:
                    has_alpha = im.mode == "PA" or "transparency" in im.info
                    array = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
            elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                array = np.asarray(im.convert("RGB"))
            else:
                array = np.asarray(im)
    except ImageReadError:
        raise
    except Image.DecompressionBombError:
        raise ImageReadError(
            path, f"is larger than the {kind} reader's safety limit on pixels: save it as a TIFF instead"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(
            path, f"cannot be read as a {kind} ({_short(err)}): the file is damaged or of another type; "
            "re-export it"
        ) from None
    axes = "YX" if array.ndim == 2 else "YXS"
    return array, axes


# --- masks ---------------------------------------------------------------------------------------


def _single_channel(chw: np.ndarray, path: Path) -> np.ndarray:
    """``(C, *spatial)`` → ``(*spatial)`` for masks: one channel, or colour channels that agree."""
    c = chw.shape[0]
    if c == 1:
        return chw[0]
    colour = chw[:3] if c in (3, 4) else chw[:1] if c == 2 else chw
    if c in (2, 3, 4) and all(np.array_equal(colour[0], colour[i]) for i in range(1, colour.shape[0])):
        return chw[0]
    kind = {2: "grey+alpha", 3: "RGB", 4: "RGBA"}.get(c, f"{c}-channel")
    n = _count_colours(colour)
    raise ImageReadError(
        path,
        f"is an {kind} image with {n} colours; a mask must be single-channel with class indices "
        "(0 = background, 1, 2, ...): convert each colour to its class index and save it as a "
        "greyscale or palette PNG, or a single-channel TIFF",
    )


def _count_colours(colour: np.ndarray) -> int:
    flat = colour.reshape(colour.shape[0], -1).T
    return int(np.unique(flat, axis=0).shape[0])


def _integer_labels(mask: np.ndarray, path: Path) -> np.ndarray:
    if np.issubdtype(mask.dtype, np.integer):
        return mask
    if np.issubdtype(mask.dtype, np.floating):
        finite = np.isfinite(mask)
        if not finite.all():
            raise ImageReadError(
                path, f"holds {int((~finite).sum())} NaN or infinite values; a mask must hold class "
                "indices: replace them and save the mask as integers"
            )
        if np.any(mask != np.round(mask)):
            sample = mask[mask != np.round(mask)].flat[0]
            raise ImageReadError(
                path, f"holds fractional values (e.g. {sample:g}); a mask must hold whole class indices: "
                "threshold or round it and save it as integers"
            )
        return mask.astype(np.int64)
    raise ImageReadError(path, f"has dtype {mask.dtype}; a mask must hold integer class indices")


def detect_spatial_dims(path: str | Path) -> int:
    """2 for an image that reads as 2D, 3 for a stack that only reads as a volume."""
    try:
        read_image(path, spatial_dims=2)
        return 2
    except BiosegError:
        read_image(path, spatial_dims=3)  # a file that reads neither way raises its own clear error
        return 3
