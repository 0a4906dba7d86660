"""``bioseg crop``: training subimages from large fields, written as a dataset in the pairs layout.

Three kinds of crop, each a box of ``size`` voxels per spatial axis (clipped to the image):

- ``object``: one box centred on each object's centroid, shifted inwards where it would leave the image;
- ``grid``: a regular grid of boxes covering the image (the last row and column end at the border);
- ``negative``: boxes without a single object voxel ("negative controls"), drawn at random, not
  overlapping each other.

Box searches are pure functions of the label image (``object_boxes``, ``grid_boxes``, ``negative_boxes``);
:func:`crop_dataset` reads the files, cuts the boxes and writes ``images/<stem>_<k>.tif``,
``masks/<stem>_<k>.tif`` and ``crops.csv`` (source files and box of every crop). Works in 2D and 3D.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import ndimage

from bioseg.errors import BiosegError
from bioseg.io import IMAGE_SUFFIXES, detect_spatial_dims, read_image, read_mask, write_tiff
from bioseg.io.folders import check_output_folder

Box = tuple[tuple[int, ...], tuple[int, ...]]  # (start, stop) per spatial axis
CropMode = Literal["object", "grid"]
MaskFormat = Literal["binary", "instances", "centre"]
ObjectsFrom = Literal["auto", "ids", "components"]

__all__ = [
    "CropResult",
    "box_size",
    "crop_dataset",
    "find_objects",
    "grid_boxes",
    "negative_boxes",
    "object_boxes",
    "window_sums",
]


def box_size(size: int | Sequence[int], shape: Sequence[int]) -> tuple[int, ...]:
    """``size`` (one value for every axis, or one per axis) clipped to the image ``shape``."""
    sizes = [int(size)] * len(shape) if np.isscalar(size) else [int(s) for s in size]
    if len(sizes) != len(shape) or any(s < 1 for s in sizes):
        raise BiosegError(
            f"crop size {size!r} does not fit a {len(shape)}D image of shape {tuple(shape)}; "
            f"give one positive size, or {len(shape)} sizes separated by commas"
        )
    return tuple(min(s, n) for s, n in zip(sizes, shape, strict=True))


def find_objects(mask: np.ndarray, objects_from: ObjectsFrom = "auto") -> np.ndarray:
    """Instance labels ``(*spatial)`` (0 = background) of a mask.

    ``ids``: the mask's own values are object ids; ``components``: every connected foreground component
    (face connectivity) is an object; ``auto``: ids when the mask holds more than one non-zero value,
    else components (a 0/1 or 0/255 mask of touching-free objects).
    """
    mask = np.asarray(mask)
    if objects_from not in ("auto", "ids", "components"):
        raise BiosegError(f"objects_from '{objects_from}' is not one of auto, ids, components")
    if objects_from == "auto":
        values = np.unique(mask)
        objects_from = "ids" if np.count_nonzero(values) > 1 else "components"
    if objects_from == "components":
        labels, _ = ndimage.label(mask != 0)
        return labels
    if mask.size and mask.min() < 0:
        raise BiosegError(f"the mask holds negative values (min {mask.min()}); object ids must be >= 0")
    return mask.astype(np.int64, copy=False)


def _clipped_start(centre: float, size: int, extent: int) -> int:
    return int(np.clip(np.floor(centre - (size - 1) / 2 + 0.5), 0, extent - size))


def object_boxes(labels: np.ndarray, size: int | Sequence[int]) -> list[tuple[int, Box]]:
    """``(object id, box)`` per object of ``labels`` ``(*spatial)``, the box centred on the object's
    centroid (the centroid voxel is the box's middle voxel) and shifted inwards at the borders."""
    labels = np.asarray(labels)
    sizes = box_size(size, labels.shape)
    ids = [int(i) for i in np.unique(labels) if i != 0]
    if not ids:
        return []
    centres = ndimage.center_of_mass(np.ones(labels.shape, np.uint8), labels, ids)
    out = []
    for i, centre in zip(ids, centres, strict=True):
        start = tuple(_clipped_start(c, s, n) for c, s, n in zip(centre, sizes, labels.shape, strict=True))
        out.append((i, (start, tuple(a + s for a, s in zip(start, sizes, strict=True)))))
    return out


def grid_boxes(shape: Sequence[int], size: int | Sequence[int]) -> list[Box]:
    """Boxes of ``size`` tiling ``shape`` without gaps: steps of ``size``, the last box of each axis ending
    at the border (so it may overlap its neighbour), in C order."""
    sizes = box_size(size, shape)
    starts = []
    for s, n in zip(sizes, shape, strict=True):
        axis = list(range(0, n - s + 1, s))
        if axis[-1] + s < n:
            axis.append(n - s)
        starts.append(axis)
    grid = np.stack(np.meshgrid(*starts, indexing="ij"), -1).reshape(-1, len(shape))
    return [(tuple(int(v) for v in g), tuple(int(v) + s for v, s in zip(g, sizes, strict=True))) for g in grid]


def window_sums(values: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Sum of ``values`` over every box of ``size``: ``out[start] = values[start:start + size].sum()``,
    shape ``shape - size + 1`` (separable running sums, so linear in the number of voxels)."""
    values = np.asarray(values)
    out = values.astype(np.int32 if values.size < 2**31 else np.int64)
    for axis, s in enumerate(size):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (1, 0)
        c = np.pad(np.cumsum(out, axis=axis), pad)
        before = (slice(None),) * axis
        out = c[(*before, slice(s, None))] - c[(*before, slice(None, c.shape[axis] - s))]
    return out


def negative_boxes(
    labels: np.ndarray,
    size: int | Sequence[int],
    n: int,
    rng: np.random.Generator,
    max_attempts: int | None = None,
) -> list[Box]:
    """Up to ``n`` boxes of ``size`` with no object voxel, not overlapping each other.

    Candidates are drawn at random among all object-free positions (found exactly with running sums);
    a candidate that overlaps an accepted box is rejected. At most ``max_attempts`` candidates are tried
    (default ``100 * n``), so fewer than ``n`` boxes come back when the free space is scarce.
    """
    labels = np.asarray(labels)
    if n <= 0:
        return []
    sizes = box_size(size, labels.shape)
    free = np.flatnonzero(window_sums(labels != 0, sizes) == 0)
    if free.size == 0:
        return []
    starts_shape = tuple(d - s + 1 for d, s in zip(labels.shape, sizes, strict=True))
    attempts = min(free.size, max_attempts if max_attempts is not None else 100 * n)
    order = rng.choice(free, size=attempts, replace=False)
    accepted: list[np.ndarray] = []
    size_arr = np.array(sizes)
    for flat in order:
        start = np.array(np.unravel_index(int(flat), starts_shape))
        if any(np.all(np.abs(start - other) < size_arr) for other in accepted):
            continue
        accepted.append(start)
        if len(accepted) == n:
            break
    return [(tuple(int(v) for v in a), tuple(int(v) + s for v, s in zip(a, sizes, strict=True))) for a in accepted]


@dataclass
class CropResult:
    out_dir: Path
    rows: list[dict[str, str | int]]  # one per crop, as in crops.csv
    negatives_asked: int = 0
    short: list[str] = field(default_factory=list)  # images that gave fewer negatives than asked

    def count(self, kind: str) -> int:
        return sum(1 for r in self.rows if r["kind"] == kind)

    @property
    def csv_path(self) -> Path:
        return self.out_dir / "crops.csv"


def _files(path: Path, what: str) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise BiosegError(f"{what} {path} does not exist; give a folder of images or one image file")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    files = [p for p in files if not p.name.startswith(".")]
    if not files:
        raise BiosegError(f"{what} folder {path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def pair_files(images: str | Path, masks: str | Path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs: two files, or two folders paired by file name without suffix."""
    image_files, mask_files = _files(Path(images), "images"), _files(Path(masks), "masks")
    if Path(images).is_file() and Path(masks).is_file():
        return [(image_files[0], mask_files[0])]
    by_stem = {p.stem: p for p in mask_files}
    missing = [p.name for p in image_files if p.stem not in by_stem]
    if missing:
        raise BiosegError(
            f"{len(missing)} image(s) have no mask of the same name in {masks} (first: {missing[0]}); "
            "masks pair with images by file name (cell_7.tif ↔ cell_7.png)"
        )
    return [(p, by_stem[p.stem]) for p in image_files]


def _mask_crop(labels: np.ndarray, window: tuple[slice, ...], fmt: MaskFormat, label: int | None) -> np.ndarray:
    piece = labels[window]
    if fmt == "binary":
        return (piece != 0).astype(np.uint8)
    if fmt == "centre":
        return (piece == label).astype(np.uint8) if label is not None else np.zeros(piece.shape, np.uint8)
    from skimage.segmentation import relabel_sequential

    relabelled = relabel_sequential(piece)[0]
    return relabelled.astype(np.uint16 if relabelled.max() < 2**16 else np.uint32)


def crop_dataset(
    images: str | Path,
    masks: str | Path,
    out: str | Path,
    size: int | Sequence[int] = 400,
    mode: CropMode = "object",
    negatives: int = 0,
    seed: int = 0,
    mask_format: MaskFormat = "binary",
    objects_from: ObjectsFrom = "auto",
    max_attempts: int | None = None,
) -> CropResult:
    """Cut crops from every (image, mask) pair and write them as a pairs-layout dataset in ``out``.

    Args:
        images, masks: two folders paired by file name, or two files. Images may have any number of
            channels (``(C, *spatial)`` after reading); 2D or 3D is detected from the first image.
        size: box size in voxels, one value or one per spatial axis (clipped to each image).
        mode: ``object`` (one crop centred on each object) or ``grid`` (a regular grid).
        negatives: object-free crops per image, on top of the others.
        mask_format: crop masks as ``binary`` (0/1, every object), ``instances`` (ids renumbered 1..n
            within the crop) or ``centre`` (only the object the crop is centred on; ``object`` mode).
        objects_from: how objects are found in the masks, see :func:`find_objects`.
        max_attempts: candidate boxes tried per image for negatives (default 100 per negative).
    """
    _check_options(mode, mask_format, negatives)
    out = check_output_folder(out, "crop folder")
    pairs = pair_files(images, masks)
    for sub in ("images", "masks"):
        if (out / sub).is_dir() and any((out / sub).iterdir()):
            raise BiosegError(f"{out / sub} already holds files; choose a new output folder (crops never mix)")
    dims = detect_spatial_dims(pairs[0][0])
    rng = np.random.default_rng(seed)
    result = CropResult(out, [], negatives_asked=negatives * len(pairs))
    for image_path, mask_path in pairs:
        image = read_image(image_path, spatial_dims=dims)
        mask = read_mask(mask_path, spatial_dims=dims)
        if image.shape[1:] != mask.shape:
            raise BiosegError(
                f"{image_path.name} is {image.shape[1:]} but its mask {mask_path.name} is {mask.shape}; "
                "an image and its mask must have the same size"
            )
        labels = find_objects(mask, objects_from)
        boxes: list[tuple[str, int | None, Box]] = []
        if mode == "object":
            boxes += [("object", i, box) for i, box in object_boxes(labels, size)]
        else:
            boxes += [("grid", None, box) for box in grid_boxes(labels.shape, size)]
        found = negative_boxes(labels, size, negatives, rng, max_attempts)
        boxes += [("negative", None, box) for box in found]
        if len(found) < negatives:
            result.short.append(f"{image_path.name}: {len(found)} of {negatives}")
        for k, (kind, label, box) in enumerate(boxes):
            name = f"{image_path.stem}_{k}"
            coords = _write_crop(out, name, image, labels, box, mask_format, label)
            result.rows.append({"name": name, "kind": kind, "object": "" if label is None else label,
                                "image": str(image_path), "mask": str(mask_path), **coords})  # fmt: skip
    _write_list(result)
    return result


def _check_options(mode: str, mask_format: str, negatives: int) -> None:
    if mode not in ("object", "grid"):
        raise BiosegError(f"crop mode '{mode}' is not one of object, grid")
    if mask_format not in ("binary", "instances", "centre"):
        raise BiosegError(f"mask format '{mask_format}' is not one of binary, instances, centre")
    if mask_format == "centre" and mode != "object":
        raise BiosegError("mask format 'centre' keeps the object a crop is centred on: use it with --per-object")
    if negatives < 0:
        raise BiosegError(f"--negatives {negatives} must be >= 0")


def _write_crop(
    out: Path, name: str, image: np.ndarray, labels: np.ndarray, box: Box, mask_format: MaskFormat, label: int | None
) -> dict[str, int]:
    """Write one crop's image and mask TIFFs; returns its box (``y0``, ``x0``, ``y1``, ``x1``, with ``z`` in 3D)."""
    start, stop = box
    axes = "ZYX"[3 - labels.ndim :]
    window = tuple(slice(a, b) for a, b in zip(start, stop, strict=True))
    piece = np.ascontiguousarray(image[(slice(None), *window)])
    if piece.shape[0] == 1:
        write_tiff(out / "images" / f"{name}.tif", piece[0], axes=axes)
    else:
        write_tiff(out / "images" / f"{name}.tif", piece, axes="C" + axes)
    write_tiff(out / "masks" / f"{name}.tif", _mask_crop(labels, window, mask_format, label), axes=axes)
    coords = {f"{a.lower()}0": v for a, v in zip(axes, start, strict=True)}
    return coords | {f"{a.lower()}1": v for a, v in zip(axes, stop, strict=True)}


def _write_list(result: CropResult) -> None:
    """``crops.csv``: a row per crop, its kind, source files and box."""
    result.out_dir.mkdir(parents=True, exist_ok=True)
    with result.csv_path.open("w", newline="") as f:
        fields = list(result.rows[0]) if result.rows else ["name", "kind", "object", "image", "mask"]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(result.rows)
