"""Read and write images and masks: TIFF through tifffile, PNG/JPEG through Pillow.

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

With ``spatial_dims=3`` the same rules apply one dimension up: ``(Z, Y, X)`` → ``(1, Z, Y, X)``,
``(C, Z, Y, X)`` or ``(Z, Y, X, C)`` → ``(C, Z, Y, X)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bioseg.errors import BiosegError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_TIFF_SUFFIXES = (".tif", ".tiff")
_MAX_HEURISTIC_CHANNELS = 4


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


def read_image(path: str | Path, *, spatial_dims: int = 2) -> np.ndarray:
    """Read an image as ``(C, Y, X)`` (``spatial_dims=2``) or ``(C, Z, Y, X)`` (``spatial_dims=3``).

    The dtype is the file's own (uint8, uint16, float32, ...). See the module docstring for how
    the channel axis is found. Raises ``ImageReadError`` (a BiosegError) naming the file when it is
    missing, empty, corrupt, of an unknown type or of a shape that cannot be read as asked.
    """
    path = Path(path)
    array, axes = _load(path, palette_as_indices=False)
    return _channels_first(array, axes, spatial_dims, path)


def read_mask(path: str | Path, *, spatial_dims: int = 2) -> np.ndarray:
    """Read a label mask as ``(Y, X)`` (or ``(Z, Y, X)``) integers.

    Palette PNGs give their palette indices. An RGB(A) or grey+alpha mask whose colour channels are
    all equal is reduced to one channel; a mask with real colours raises an ``ImageReadError``
    (colours are not class indices). Bool masks become uint8; float masks holding whole numbers
    become int64; fractional values are an error.
    """
    path = Path(path)
    array, axes = _load(path, palette_as_indices=True)
    chw = _channels_first(array, axes, spatial_dims, path)
    mask = _single_channel(chw, path)
    return _integer_labels(mask, path)


def _load(path: Path, *, palette_as_indices: bool) -> tuple[np.ndarray, str | None]:
    """The stored array and, when the file says so, its axes (tifffile letters)."""
    if not path.exists():
        raise ImageReadError(path, "does not exist")
    if not path.is_file():
        raise ImageReadError(path, "is not a file")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ImageReadError(
            path, f"has suffix '{path.suffix}'; images must be one of {', '.join(IMAGE_SUFFIXES)}"
        )
    if path.stat().st_size == 0:
        raise ImageReadError(path, "is empty (0 bytes): re-export it or remove it")
    if suffix in _TIFF_SUFFIXES:
        array, axes = _load_tiff(path)
    else:
        array, axes = _load_pillow(path, palette_as_indices=palette_as_indices)
    if array.size == 0:
        raise ImageReadError(path, f"holds no pixels (shape {tuple(array.shape)}): re-export it or remove it")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array, axes


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


def _channels_first(array: np.ndarray, axes: str | None, spatial_dims: int, path: Path) -> np.ndarray:
    """``array`` as ``(C, *spatial)`` with ``len(spatial) == spatial_dims``."""
    if spatial_dims not in (2, 3):
        raise BiosegError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    shape = tuple(array.shape)
    if axes is not None and len(axes) != array.ndim:
        axes = None
    want = "(Y, X)" if spatial_dims == 2 else "(Z, Y, X)"
    shown = f"shape {shape}" + (f", axes {axes}" if axes else "")

    if array.ndim < spatial_dims:
        raise ImageReadError(path, f"has {shown}; a {spatial_dims}D image needs at least {want}")
    if array.ndim == spatial_dims:
        if spatial_dims == 2 or axes is None or not any(a in _CHANNEL_AXES for a in axes):
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
    if channel_axis is None and axes is not None and any(a in _NON_CHANNEL_AXES for a in axes):
        if spatial_dims == 2 and "Z" in axes:
            raise ImageReadError(
                path, f"has {shown}: it is a 3D stack of {shape[axes.index('Z')]} planes, and 2D images "
                "are expected; for volumes use model.spatial_dims: 3, or save each plane as its own file"
            )
        raise ImageReadError(
            path, f"has {shown}; a {spatial_dims}D image must be {want} with an optional channel axis "
            "(time series are not supported: save one file per time point)"
        )
    if channel_axis is None:
        channel_axis = _channel_axis_from_shape(shape)
    if channel_axis is None:
        raise ImageReadError(
            path,
            f"has {shown} and no channel axis can be told apart: a {spatial_dims}D image must be {want}, "
            f"or have a first or last channel axis of at most {_MAX_HEURISTIC_CHANNELS} that is smaller "
            "than the others. "
            + (
                "If it is a volume use model.spatial_dims: 3; "
                if spatial_dims == 2
                else ""
            )
            + "if it has more channels, save it with axes metadata (bioseg.io.write_tiff(path, array, "
            f"axes='C{'ZYX' if spatial_dims == 3 else 'YX'}'))",
        )
    return np.ascontiguousarray(np.moveaxis(array, channel_axis, 0))


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


# --- writing -------------------------------------------------------------------------------------


def write_tiff(path: str | Path, array: np.ndarray, axes: str | None = None) -> Path:
    """Write a float or integer array as a zlib-compressed TIFF; parent folders are created.

    ``axes`` (tifffile letters, e.g. ``"CYX"``, ``"ZYX"``, ``"CZYX"``) is stored in the file so
    that ``read_image`` finds the channel axis without guessing; give it for anything that is not
    plain ``(Y, X)``. Without it, a ``(Y, X, 3|4)`` uint8/uint16 array is stored as RGB(A).
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
    kwargs: dict = {"compression": "zlib", "bigtiff": array.nbytes > 2**32 - 2**25}
    if axes is not None:
        axes = axes.upper()
        if len(axes) != array.ndim:
            raise BiosegError(
                f"write_tiff: axes '{axes}' has {len(axes)} letters but the array has shape {array.shape}"
            )
        kwargs["metadata"] = {"axes": axes}
        kwargs["photometric"] = "rgb" if axes.endswith("S") else "minisblack"
    else:
        rgb = array.ndim == 3 and array.shape[-1] in (3, 4) and array.dtype in (np.uint8, np.uint16)
        kwargs["photometric"] = "rgb" if rgb else "minisblack"
    if kwargs["photometric"] == "rgb" and array.shape[-1] == 4:
        kwargs["extrasamples"] = ("unassalpha",)
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array, **kwargs)
    return path


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

