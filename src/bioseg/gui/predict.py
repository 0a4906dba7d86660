"""What the GUI's predict button does, without the page: read the uploads, predict them as ``bioseg
predict`` does with the settings chosen, list the objects, and pack the outputs into one zip.

Every user mistake (a file too large, unreadable, of the wrong dimensions or channels) is a
:class:`~bioseg.errors.BiosegError` naming the file, which the page shows as one line.
"""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from bioseg.data.dataset import read_input, voxel_spacing
from bioseg.errors import BiosegError
from bioseg.inference.files import write_prediction
from bioseg.inference.instances import predict_instances
from bioseg.inference.predictor import Predictor
from bioseg.io import CONTAINER_SUFFIXES, IMAGE_SUFFIXES

#: the ``post.instances`` settings the page offers, by their names there
INSTANCE_SETTINGS = {"object_threshold": "threshold", "seed_h": "h", "merge_threshold": "merge_threshold",
                     "object_min_size": "min_size"}  # fmt: skip


@dataclass
class Settings:
    """What a user adjusts; None keeps the run's own value."""

    threshold: float | None = None
    overlap: float | None = None
    tta: bool | None = None
    precision: str | None = None
    object_threshold: float | None = None
    seed_h: float | None = None
    merge_threshold: float | None = None
    object_min_size: int | None = None

    def infer(self) -> dict[str, object]:
        return {"threshold": self.threshold, "overlap": self.overlap, "tta": self.tta, "precision": self.precision}


@dataclass
class ImageResult:
    name: str  # the output stem
    raw: np.ndarray  # (C, *spatial) as read
    labels: dict[str, np.ndarray]  # head → (*spatial) class labels
    classes: dict[str, int]
    instances: np.ndarray | None = None
    objects: list[dict[str, object]] = field(default_factory=list)


@dataclass
class Result:
    images: list[ImageResult]
    folder: Path  # every file written
    archive: Path  # labels, probabilities and objects (TIFF) and the objects' tables, in one zip


def make_predictor(run_dir: str | Path, settings: Settings) -> Predictor:
    """The run's predictor with the page's settings; the object settings go into a copy of its config."""
    predictor = Predictor.from_run(run_dir, **settings.infer())
    post = {INSTANCE_SETTINGS[f.name]: getattr(settings, f.name) for f in fields(settings)
            if f.name in INSTANCE_SETTINGS and getattr(settings, f.name) is not None}  # fmt: skip
    if post and predictor.cfg.post.instances.mode != "off":
        cfg = predictor.cfg.model_copy(deep=True)
        for key, value in post.items():
            setattr(cfg.post.instances, key, value)
        predictor.cfg = cfg
    return predictor


def read_upload(path: str | Path, predictor: Predictor, max_bytes: int) -> np.ndarray:
    """An uploaded (or server-side) image as the model reads it, refused when larger than ``max_bytes``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES + CONTAINER_SUFFIXES:
        raise BiosegError(f"{path.name}: unknown image type {suffix or '(none)'}; give "
                          f"{', '.join(IMAGE_SUFFIXES + CONTAINER_SUFFIXES)}")  # fmt: skip
    if path.is_file() and path.stat().st_size > max_bytes:
        raise BiosegError(f"{path.name} is {path.stat().st_size / 2**20:.1f} MB; the limit is "
                          f"{max_bytes / 2**20:.1f} MB (bioseg gui --max-upload-mb)")  # fmt: skip
    dims = predictor.spatial_dims
    planes = _tiff_planes(path)
    if dims == 2 and planes > 1:
        raise BiosegError(f"{path.name} is a 3D stack of {planes} planes; the chosen model is 2D: choose a 3D "
                          "model, or upload one plane")  # fmt: skip
    try:
        raw = read_input(path, predictor.cfg.data, dims)
    except BiosegError as err:
        text = str(err).replace(str(path), path.name)  # the upload folder is no concern of the user's
        raise BiosegError(text if text.startswith(path.name) else f"{path.name}: {text}") from None
    except Exception as err:  # a decoder's own error on a damaged file
        raise BiosegError(f"{path.name} could not be read as an image ({type(err).__name__}: {err})") from None
    channels = predictor.cfg.data.in_channels
    if predictor.cfg.data.channels is None and raw.shape[0] != channels:
        raise BiosegError(f"{path.name} has {raw.shape[0]} channel(s) (shape {raw.shape[1:]}); the chosen model "
                          f"reads {channels}: choose a model for such images or upload {channels}-channel "
                          "images")  # fmt: skip
    return raw


def _tiff_planes(path: Path) -> int:
    """The number of z planes a TIFF says it holds (its axes metadata has Z); 0 when it says none, or
    cannot be read (the reader then says why)."""
    if path.suffix.lower() not in (".tif", ".tiff") or not path.is_file():
        return 0
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return int(series.shape[series.axes.index("Z")]) if "Z" in series.axes else 0
    except Exception:  # noqa: BLE001  (a damaged file: read_input names the problem)
        return 0


def _stems(paths: Sequence[Path]) -> list[str]:
    """Output stems, made unique when two uploads share a name."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        stem = path.stem if path.suffix.lower() != ".zarr" else path.name.removesuffix(path.suffix)
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems


def object_rows(instances: np.ndarray) -> list[dict[str, object]]:
    """One row per object: id, size in pixels (voxels), centroid (z, y, x order, pixels)."""
    ids, counts = np.unique(instances[instances > 0], return_counts=True)
    if ids.size == 0:
        return []
    flat = np.searchsorted(ids, instances[instances > 0])
    coords = np.nonzero(instances > 0)
    centres = [np.bincount(flat, weights=c, minlength=ids.size) / counts for c in coords]
    axes = "zyx"[-instances.ndim:]
    rows = []
    for k, (i, n) in enumerate(zip(ids, counts, strict=True)):
        centre = {f"centroid_{a}": round(float(c[k]), 1) for a, c in zip(axes, centres, strict=True)}
        rows.append({"id": int(i), "size": int(n), **centre})
    return rows


def _write_objects(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["id", "size"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def predict_uploads(
    run_dir: str | Path,
    paths: Sequence[str | Path],
    settings: Settings,
    out_dir: str | Path,
    max_bytes: int,
    progress: Callable[[float, str], None] | None = None,
) -> Result:
    """Predict every file of ``paths`` into ``out_dir`` (the files ``bioseg predict`` writes, plus
    ``<stem>_objects.csv`` in instance mode) and zip the TIFFs and tables into ``out_dir/bioseg_prediction.zip``.
    All files are read (and checked) before the first is predicted."""
    if not paths:
        raise BiosegError("no image given: upload one or more images, or give a path on this machine")
    predictor = make_predictor(run_dir, settings)
    files = [Path(p) for p in paths]
    raws = [read_upload(p, predictor, max_bytes) for p in files]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg, results, written = predictor.cfg, [], []
    for k, (path, stem, raw) in enumerate(zip(files, _stems(files), raws, strict=True)):
        if progress is not None:
            progress(k / len(files), f"predicting {path.name} ({k + 1} of {len(files)})")
        prediction = predictor.predict(raw, name=path.name)
        instances = predict_instances(prediction.probabilities, cfg, voxel_spacing(path, cfg), scale=prediction.scale)
        written += write_prediction(out, stem, raw, prediction, predictor, instances)
        result = ImageResult(stem, raw, prediction.labels, {h: cfg.heads[h].classes for h in cfg.heads}, instances)
        if instances is not None:
            result.objects = object_rows(instances)
            written.append(_write_objects(out / f"{stem}_objects.csv", result.objects))
        results.append(result)
    archive = out / "bioseg_prediction.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in written:
            if path.suffix in (".tif", ".csv"):
                zf.write(path, path.name)
    if progress is not None:
        progress(1.0, "done")
    return Result(results, out, archive)
