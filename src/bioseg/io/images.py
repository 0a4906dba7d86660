"""Read and write images and masks: TIFF (tifffile), PNG/JPEG (Pillow), OME-Zarr and HDF5.

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

import math
from pathlib import Path

import numpy as np

from bioseg.errors import BiosegError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
CONTAINER_SUFFIXES = (".zarr", ".h5", ".hdf5")
_TIFF_SUFFIXES = (".tif", ".tiff")
_MAX_HEURISTIC_CHANNELS = 4
VoxelSize = tuple[float, float, float]


class ImageReadError(BiosegError):
    """A file that cannot be used: ``str(err)`` is ``"<path> <reason>"``.

    ``reason`` is kept apart so that callers (the dataset check) can name the file their own way,
    e.g. relative to the dataset folder.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path} {reason}")


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


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:200]


# --- axes ----------------------------------------------------------------------------------------

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

    # one axis more than the spatial ones: which is the channel axis?
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
    return np.ascontiguousarray(np.moveaxis(array, channel_axis, 0))


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


# --- voxel size ----------------------------------------------------------------------------------

# micrometres per unit, for the unit names that ImageJ, OME and NGFF write
_UM_PER_UNIT = {
    "µm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0,
    "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3,
    "mm": 1e3, "millimeter": 1e3, "millimetre": 1e3,
    "cm": 1e4, "centimeter": 1e4, "centimetre": 1e4,
    "m": 1e6, "meter": 1e6, "metre": 1e6,
    "in": 25400.0, "inch": 25400.0,
    "å": 1e-4, "angstrom": 1e-4,
}


def um_per_unit(unit: str | None) -> float | None:
    """Micrometres in one ``unit`` (None for no unit: values are taken as µm); None if unknown."""
    if unit is None or unit == "":
        return 1.0
    name = str(unit).strip().lower().replace("\\u00b5", "µ").replace("μ", "µ")  # greek mu → micro sign
    return _UM_PER_UNIT.get(name)


def _voxel(z: float | None, y: float | None, x: float | None) -> VoxelSize | None:
    if y is None or x is None:
        return None
    values = (1.0 if z is None else float(z), float(y), float(x))
    if not all(math.isfinite(v) and v > 0 for v in values):
        return None
    return values


def _tiff_voxel_size(path: Path) -> VoxelSize | None:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome and tif.ome_metadata:
                found = _ome_voxel_size(tif.ome_metadata)
                if found is not None:
                    return found
            page = tif.pages.first
            xres, yres = page.tags.get("XResolution"), page.tags.get("YResolution")
            unit_tag = page.tags.get("ResolutionUnit")
            res_unit = int(unit_tag.value) if unit_tag is not None else 2  # TIFF's default is inch
            imagej = tif.imagej_metadata if tif.is_imagej else None
    except Exception as err:  # damaged files: reading the image says so; here there is just no size
        raise ImageReadError(path, f"cannot be read as a TIFF ({_short(err)}): re-export it") from None

    def size(tag: object) -> float | None:  # pixels per unit → units per pixel
        if tag is None:
            return None
        num, den = tag.value
        return den / num if num else None

    y, x = size(yres), size(xres)
    if imagej is not None:
        unit = imagej.get("unit")
        spacing = imagej.get("spacing")
        if unit is None and spacing is None and (x, y) in ((1.0, 1.0), (None, None)):
            return None  # an uncalibrated ImageJ file
        scale = um_per_unit(unit)
        if scale is None:
            return None
        z = spacing * scale if spacing is not None else None
        return _voxel(z, None if y is None else y * scale, None if x is None else x * scale)
    scale = {2: 25400.0, 3: 10000.0}.get(res_unit)  # inch, centimetre; 1 = no unit
    if scale is None or y is None or x is None:
        return None
    return _voxel(None, y * scale, x * scale)


def _ome_voxel_size(xml: str) -> VoxelSize | None:
    import tifffile

    try:
        ome = tifffile.xml2dict(xml)["OME"]
        image = ome["Image"][0] if isinstance(ome["Image"], list) else ome["Image"]
        pixels = image["Pixels"]
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    values = []
    for axis in "ZYX":
        value = pixels.get(f"PhysicalSize{axis}")
        scale = um_per_unit(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        values.append(None if value is None or scale is None else float(value) * scale)
    return _voxel(*values)


# --- writing -------------------------------------------------------------------------------------

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
    rgb = array.ndim == 3 and array.shape[-1] in (3, 4) and array.dtype in (np.uint8, np.uint16)
    voxel = _check_voxel_size(voxel_size, path) if voxel_size is not None else None
    bigtiff = array.nbytes > 2**32 - 2**25
    kwargs: dict = {"compression": "zlib"}
    named = axes if axes is not None else "YX" if array.ndim == 2 else "YXS" if rgb else None
    if named is None and voxel is not None:
        if array.ndim != 3:
            raise BiosegError(
                f"write_tiff: {path} has shape {array.shape}; give axes (e.g. 'CZYX') with a voxel size"
            )
        named = "ZYX"

    imagej = named is not None and (voxel is not None or "Z" in named) and _imagej_can_hold(array, named)
    if imagej and not bigtiff:  # ImageJ hyperstacks are classic TIFF (< 4 GiB)
        order = sorted(range(array.ndim), key=lambda i: _IMAGEJ_ORDER.index(named[i]))
        array, named = np.transpose(array, order), "".join(named[i] for i in order)
        metadata: dict = {"axes": named}
        if voxel is not None:
            metadata.update(spacing=voxel[0], unit="um")
            kwargs["resolution"] = (1.0 / voxel[2], 1.0 / voxel[1])
        kwargs.update(imagej=True, metadata=metadata)
        kwargs["photometric"] = "rgb" if named.endswith("S") else "minisblack"
    elif voxel is not None:
        array = _ome_dtype(array, path)
        metadata = {"axes": named, "PhysicalSizeY": voxel[1], "PhysicalSizeX": voxel[2]}
        metadata.update(PhysicalSizeYUnit="µm", PhysicalSizeXUnit="µm")
        if "Z" in named:
            metadata.update(PhysicalSizeZ=voxel[0], PhysicalSizeZUnit="µm")
        kwargs.update(ome=True, metadata=metadata, bigtiff=bigtiff)
        kwargs["photometric"] = "rgb" if named.endswith("S") else "minisblack"
    elif axes is not None:
        kwargs.update(metadata={"axes": axes}, bigtiff=bigtiff)
        kwargs["photometric"] = "rgb" if axes.endswith("S") else "minisblack"
    else:
        kwargs.update(bigtiff=bigtiff, photometric="rgb" if rgb else "minisblack")
    if kwargs["photometric"] == "rgb" and array.shape[-1] == 4:
        kwargs["extrasamples"] = ("unassalpha",)
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array, **kwargs)
    return path


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



def detect_spatial_dims(path: str | Path) -> int:
    """2 for an image that reads as 2D, 3 for a stack that only reads as a volume."""
    try:
        read_image(path, spatial_dims=2)
        return 2
    except BiosegError:
        read_image(path, spatial_dims=3)  # a file that reads neither way raises its own clear error
        return 3
