"""Prediction of image files into an output folder: probabilities, labels and an overlay per image."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from bioseg.data.dataset import read_input, voxel_spacing
from bioseg.errors import BiosegError
from bioseg.inference.instances import predict_instances
from bioseg.inference.predictor import Prediction, Predictor
from bioseg.io import IMAGE_SUFFIXES, write_tiff
from bioseg.io.folders import check_output_folder

logger = logging.getLogger("bioseg")


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders expanded to their image files (sorted); nothing found is an error."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir() and path.suffix.lower() == ".zarr":  # an OME-Zarr store is one image
            files.append(path)
        elif path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            )
            if not found:
                raise BiosegError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise BiosegError(f"input {path} does not exist; give image files or folders of images")
    if not files:
        raise BiosegError("no input images given")
    return files


def output_names(stem: str, head: str, single_head: bool) -> dict[str, str]:
    base = stem if single_head else f"{stem}_{head}"
    return {
        "prob": f"{base}_prob.tif",
        "labels": f"{base}_labels.tif",
        "overlay": f"{base}_overlay.png",
        "uncertainty": f"{base}_uncertainty.tif",
    }


def uncertainty_map(prediction: Prediction, head: str) -> np.ndarray:
    """What ``<stem>_uncertainty.tif`` holds: the entropy ``(*spatial)`` in [0, 1]; with several members
    or views, ``(2, *spatial)``: the entropy, then the mutual information between them."""
    entropy = prediction.uncertainty[head]
    if head not in prediction.mutual_information:
        return entropy.astype(np.float32)
    return np.stack([entropy, prediction.mutual_information[head]]).astype(np.float32)


def _write_tiff_whole(path: Path, array: np.ndarray) -> Path:
    tmp = path.parent / f".{path.name}.tmp.tif"  # written aside, then renamed: never a half-written file
    write_tiff(tmp, array)
    tmp.replace(path)
    return path


def write_prediction(
    out_dir: Path,
    stem: str,
    image: np.ndarray,
    prediction: Prediction,
    predictor: Predictor,
    instances: np.ndarray | None = None,
    uncertainty: bool = False,
) -> list[Path]:
    """Write one image's outputs: per head probabilities, labels, an overlay and, with ``uncertainty``,
    :func:`uncertainty_map`; objects when given."""
    from bioseg.reports.charts import save_overlay

    out_dir.mkdir(parents=True, exist_ok=True)
    single = len(prediction.labels) == 1
    written = []
    for head, labels in prediction.labels.items():
        names = output_names(stem, head, single)
        classes = predictor.cfg.heads[head].classes
        label_dtype = np.uint8 if classes < 256 else np.uint16
        for key, array in (("prob", prediction.probabilities[head]), ("labels", labels.astype(label_dtype))):
            written.append(_write_tiff_whole(out_dir / names[key], array))
        written.append(save_overlay(out_dir / names["overlay"], image, labels, classes))
        if uncertainty:
            written.append(_write_tiff_whole(out_dir / names["uncertainty"], uncertainty_map(prediction, head)))
    if instances is not None:
        written.append(_write_tiff_whole(out_dir / f"{stem}_instances.tif", instances.astype(np.int32)))
    return written


def predict_files(
    run: str | Path,
    inputs: Iterable[str | Path],
    out_dir: str | Path,
    progress: bool = True,
    ensemble: Iterable[str | Path] = (),
    uncertainty: bool = False,
    **infer,
) -> list[Path]:
    """Predict every input image with the run's model — or the mean of an ensemble: ``run`` an experiment
    folder with several folds and/or more runs in ``ensemble`` — and return the files written.
    ``uncertainty``: also ``<stem>_uncertainty.tif`` (see :func:`uncertainty_map`)."""
    out_dir = check_output_folder(out_dir)
    predictor = Predictor.from_runs([run, *ensemble], **infer)
    files = expand_inputs(inputs)
    written: list[Path] = []
    scales: list[tuple[str, Prediction]] = []
    cfg = predictor.cfg
    for path in tqdm(files, desc="predicting", disable=not progress):
        raw = read_input(path, cfg.data, cfg.model.spatial_dims)
        prediction = predictor.predict(raw, name=str(path))
        instances = predict_instances(prediction.probabilities, cfg, voxel_spacing(path, cfg), scale=prediction.scale)
        written += write_prediction(out_dir, path.stem, raw, prediction, predictor, instances, uncertainty)
        if path.suffix.lower() == ".zarr":
            write_into_store(path, prediction, instances)
        scales.append((path.name, prediction))
    if predictor.infer.rescale != "off" or predictor.infer.object_size is not None:
        written.append(write_scales(out_dir / "rescale.csv", scales))
    return written


def write_scales(path: Path, predictions: list[tuple[str, Prediction]]) -> Path:
    """``rescale.csv``: per image, the diameter of its objects (pixels) and the factor it was predicted at;
    each also said once in the log."""
    lines = ["image,object_size_px,scale"]
    for name, p in predictions:
        size = f"{p.object_size:.2f}" if p.object_size is not None else ""
        lines.append(f"{name},{size},{p.scale:.4f}")
        logger.info("%s: objects %s px → rescaled by %.3g", name, size or "?", p.scale)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_into_store(store: Path, prediction: Prediction, instances: np.ndarray | None) -> None:
    """Label images ``labels/<head>_prediction`` (and ``labels/instances_prediction``) in the input store,
    beside its own labels, so viewers of the store show image, truth and prediction together."""
    from bioseg.io import add_ome_zarr_labels

    labels = {
        f"{head}_prediction": lab.astype(np.uint8 if lab.max() < 256 else np.int32)
        for head, lab in prediction.labels.items()
    }
    if instances is not None:
        labels["instances_prediction"] = instances.astype(np.int32)
    add_ome_zarr_labels(store, labels)
