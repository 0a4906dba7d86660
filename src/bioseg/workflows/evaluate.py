"""``bioseg evaluate``: a run on one split of its dataset, or a folder of predictions against masks.

Semantic scores per head (Dice, IoU, accuracy; per class and mean) go to ``metrics.json`` and
``per_image.csv``; when objects are predicted (``post.instances``, or ``--instances`` for folders),
instance scores at IoU thresholds go to ``metrics_instances.json`` with F1-vs-IoU and F1-by-size charts.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from bioseg.config import Experiment
from bioseg.data.layouts import Sample
from bioseg.data.preprocess import map_mask
from bioseg.errors import BiosegError
from bioseg.inference.predictor import Prediction, Predictor
from bioseg.io import IMAGE_SUFFIXES, read_mask
from bioseg.io.folders import check_output_folder
from bioseg.metrics import confusion_matrix, describe_mean, scores_from_confusion
from bioseg.metrics.calibration import CalibrationTally, confidence_and_prediction
from bioseg.reports.run_report import write_run_report
from bioseg.workflows.split_predictions import (
    output_stem,
    predict_split,
    results_dir,
    split_predictor,
    split_samples,
)


@dataclass
class EvalResult:
    out_dir: Path
    scores: dict[str, float]  # the first head, dataset level: confusion matrices summed over images
    per_image: list[dict[str, float | str]]
    heads: dict[str, dict[str, float]] = field(default_factory=dict)
    instances: dict | None = None  # aggregated instance scores (to_dict), when objects were predicted
    means: dict[str, str] = field(default_factory=dict)  # per head: what dice_mean averages, in words
    calibration: dict[str, dict[str, Any]] = field(default_factory=dict)  # per head: ECE, uncertainty AUROC

    @property
    def metrics_json(self) -> Path:
        return self.out_dir / "metrics.json"


class _Accumulator:
    """Summed confusion matrix and per-image scores of one head; ``background`` is left out of means."""

    def __init__(self, num_classes: int, class_names: list[str], background: int | None = 0) -> None:
        self.num_classes, self.class_names, self.background = num_classes, class_names, background
        self.total = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.rows: list[dict[str, float | str]] = []

    def add(self, name: str, pred: np.ndarray, truth: np.ndarray) -> None:
        if pred.shape != truth.shape:
            raise BiosegError(f"prediction for {name} has shape {pred.shape} but its mask has {truth.shape}")
        cm = confusion_matrix(pred, truth, self.num_classes).numpy()
        self.total += cm
        self.rows.append({"image": name, **scores_from_confusion(cm, self.class_names, self.background)})

    @property
    def means(self) -> str:
        """What ``dice_mean`` and ``iou_mean`` average, in words."""
        return describe_mean(self.class_names, self.background)

    def summary(self) -> dict[str, Any]:
        scores = scores_from_confusion(self.total, self.class_names, self.background)
        mean = {k: float(np.mean([r[k] for r in self.rows])) for k in scores}
        return {"background_class": self.background, "means": self.means, "dataset": scores, "mean_per_image": mean}


def _write(out_dir: Path, heads: dict[str, _Accumulator], extra: dict, instance_scores: list) -> EvalResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    summaries = {name: acc.summary() for name, acc in heads.items()}
    first = next(iter(heads))
    doc = {**extra, "n_images": len(heads[first].rows), "classes": heads[first].class_names, **summaries[first]}
    if len(heads) > 1:
        doc["heads"] = summaries
    (out_dir / "metrics.json").write_text(json.dumps(doc, indent=2))
    rows = [dict(r) for r in heads[first].rows]
    for name, acc in list(heads.items())[1:]:  # other heads' columns carry the head's name
        for row, other in zip(rows, acc.rows, strict=True):
            row.update({f"{name}/{k}": v for k, v in other.items() if k != "image"})
    with (out_dir / "per_image.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    instances = _write_instances(out_dir, instance_scores) if instance_scores else None
    return EvalResult(
        out_dir,
        summaries[first]["dataset"],
        heads[first].rows,
        {k: v["dataset"] for k, v in summaries.items()},
        instances,
        {k: v["means"] for k, v in summaries.items()},
    )


def _write_instances(out_dir: Path, scores: list) -> dict:
    from bioseg.metrics.instance import aggregate
    from bioseg.reports.instance_charts import plot_f1_by_size, plot_f1_vs_iou

    total = aggregate(scores)
    doc = total.to_dict()
    (out_dir / "metrics_instances.json").write_text(json.dumps(doc, indent=2))
    plot_f1_vs_iou({"bioseg": total}, out_dir / "f1_vs_iou.png")
    plot_f1_by_size(total, out_dir / "f1_by_size.png")
    return doc


def evaluate_run(
    run: str | Path,
    split: str = "test",
    out_dir: str | Path | None = None,
    progress: bool = True,
    ensemble: Sequence[str | Path] = (),
    uncertainty: bool = False,
    **infer,
) -> EvalResult:
    """Predict the run's ``split`` (train/val/test of its fold) and score it against the masks. ``infer``
    overrides the run's inference settings (e.g. ``precision="fp32"``, ``tta=True``); those used go into
    metrics.json. ``run`` may be an experiment folder with several folds and ``ensemble`` names more runs:
    their mean is scored (see :meth:`Predictor.from_runs`). Calibration (ECE, reliability.png) and the
    AUROC of the uncertainty for wrong pixels are scored too; ``uncertainty`` writes its maps."""
    from bioseg.data.head_targets import background_class, class_names, instance_labels, make_head_targets
    from bioseg.inference.files import write_prediction
    from bioseg.inference.instances import predict_instances
    from bioseg.metrics.instance import match_instances

    predictor = split_predictor([run, *ensemble], split, **infer)
    cfg = predictor.cfg
    samples = split_samples(cfg, split)
    _check_head_masks(samples, cfg, split)
    heads = {
        name: _Accumulator(h.classes, class_names(cfg, name), background_class(cfg, name))
        for name, h in cfg.heads.items()
    }
    run_dir = results_dir(predictor)
    out = check_output_folder(Path(out_dir) if out_dir else run_dir / "predictions" / split)
    tallies = {name: CalibrationTally() for name in cfg.heads}
    instance_scores = []
    rescaling = predictor.infer.rescale != "off" or predictor.infer.object_size is not None
    for item in predict_split(predictor, samples, f"evaluating {split}", progress):
        targets, _ = make_head_targets(item.mask, cfg, with_weights=False)
        for head, acc in heads.items():
            acc.add(item.name, item.prediction.labels[head], targets[head])
        _tally_calibration(tallies, item.prediction, targets, predictor)
        if rescaling:  # the factor each image was predicted at, beside its scores
            next(iter(heads.values())).rows[-1]["scale"] = round(item.prediction.scale, 4)
        instances = predict_instances(item.prediction.probabilities, cfg, item.spacing, scale=item.prediction.scale)
        if instances is not None and not isinstance(item.mask, dict):
            instance_scores.append(match_instances(instances, instance_labels(item.mask, cfg.data.labels)))
        write_prediction(out, output_stem(item), item.raw, item.prediction, predictor, instances, uncertainty)
    extra = {"run": str(run_dir), "split": split, "fold": cfg.data.fold, "precision": predictor.infer.precision}
    if rescaling:
        extra["rescale"] = predictor.infer.object_size or predictor.infer.rescale
    extra |= _prediction_setup(predictor)
    extra["calibration"] = _calibration(tallies, out)
    result = _write(out, heads, extra, instance_scores)
    result.calibration = extra["calibration"]
    # the run's own scores (not an ensemble's, nor a folder the user chose elsewhere) go into its report
    if Path(out).resolve().parent == (run_dir / "predictions").resolve() and (run_dir / "model").is_dir():
        write_run_report(run_dir, "evaluate")
    return result


def _prediction_setup(predictor: Predictor) -> dict[str, Any]:
    """What was averaged: the members, test-time views and temperatures."""
    return {
        "members": [str(b.run_dir) for b in predictor.bundles],
        "tta": predictor.infer.tta,
        "views_per_image": predictor.n_views,
        "temperature": [m.temperature for m in predictor.members],
    }


def _tally_calibration(
    tallies: dict[str, CalibrationTally], prediction: Prediction, targets: dict[str, np.ndarray], predictor: Predictor
) -> None:
    """Each head's confidences against the truth, and its uncertainty against its wrong pixels."""
    for head, tally in tallies.items():
        kind = predictor.cfg.heads[head].type
        confidence, predicted = confidence_and_prediction(
            prediction.probabilities[head], kind, predictor.infer.threshold
        )
        tally.add(confidence, predicted == targets[head], prediction.uncertainty[head])


def _calibration(tallies: dict[str, CalibrationTally], out: Path) -> dict[str, dict[str, Any]]:
    """Per head: ECE, AUROC of the uncertainty for wrong pixels, accuracy and the reliability bins;
    ``reliability.png`` drawn from them."""
    from bioseg.reports.calibration_charts import plot_reliability

    docs = {head: tally.summary() for head, tally in tallies.items()}
    plot_reliability({h: {**d["reliability"], "ece": d["ece"]} for h, d in docs.items()}, out / "reliability.png")
    return docs


def _check_head_masks(samples: list[Sample], cfg: Experiment, split: str) -> None:
    """Before predicting anything: with a mask per head (multitask, zarr), every image needs all of them."""
    for sample in samples:
        if not sample.masks:
            continue
        missing = [name for name, head in cfg.heads.items() if (head.source or name) not in sample.masks]
        if missing:
            raise BiosegError(
                f"{sample.image} has no '{missing[0]}' mask; every {split} image needs one per head to be scored "
                "(add the mask, or move the image to the train split)"
            )


def _label_files(folder: Path, suffix: str) -> dict[str, Path]:
    files = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES or p.name.startswith("."):
            continue
        if suffix:
            if p.stem.endswith(suffix):
                files[p.stem.removesuffix(suffix)] = p
        elif not p.stem.endswith(("_prob", "_overlay", "_instances", "_uncertainty")):
            files[p.stem.removesuffix("_labels")] = p
    return files


def _read_labels(path: Path) -> np.ndarray:
    return np.asarray(tifffile.imread(path) if path.suffix.lower() in (".tif", ".tiff") else read_mask(path))


def evaluate_folders(
    pred_dir: str | Path,
    gt_dir: str | Path,
    *,
    num_classes: int | None = None,
    mask_values: dict[int, int] | None = None,
    instances: bool = False,
    out_dir: str | Path | None = None,
    background_class: int | None = 0,
) -> EvalResult:
    """Score label images in ``pred_dir`` (``<stem>_labels.tif``, or ``<stem>_instances.tif`` with
    ``instances``) against the masks in ``gt_dir`` paired by stem; ``background_class`` is left out of
    the means (None: every class counts)."""
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    out = check_output_folder(Path(out_dir) if out_dir else pred_dir)
    for folder in (pred_dir, gt_dir):
        if not folder.is_dir():
            raise BiosegError(f"{folder} is not a folder")
    truths = _label_files(gt_dir, "")
    preds = _label_files(pred_dir, "_instances" if instances else "")
    pairs = sorted(set(truths) & set(preds))
    expected = "<stem>_instances.tif" if instances else "<stem>_labels.tif"
    if not pairs:
        raise BiosegError(
            f"no prediction in {pred_dir} matches a mask in {gt_dir} by name "
            f"(expected {expected} beside <stem>.png, as 'bioseg predict' writes)"
        )
    missing = sorted(set(truths) - set(preds))
    if missing:
        raise BiosegError(f"{len(missing)} mask(s) in {gt_dir} have no prediction (first: {missing[0]})")
    loaded = []
    for stem in pairs:
        truth = _read_labels(truths[stem])
        if mask_values and not instances:
            truth = map_mask(truth, mask_values, max(mask_values.values()) + 1, str(truths[stem]))
        loaded.append((stem, _read_labels(preds[stem]).astype(np.int64), truth.astype(np.int64)))
    extra = {"predictions": str(pred_dir), "truth": str(gt_dir)}
    if instances:
        from bioseg.metrics.instance import match_instances

        scores = [match_instances(pred, truth) for _, pred, truth in loaded]
        # semantic foreground scores of the same objects, so both views come from one command
        acc = _Accumulator(2, ["background", "foreground"])
        for stem, pred, truth in loaded:
            acc.add(stem, (pred > 0).astype(np.int64), (truth > 0).astype(np.int64))
        return _write(out, {"objects": acc}, extra, scores)
    n = num_classes or max(2, max(int(max(p.max(), t.max())) + 1 for _, p, t in loaded))
    acc = _Accumulator(n, [f"class_{i}" for i in range(n)], background_class)
    for stem, pred, truth in loaded:
        if truth.max() >= n or pred.max() >= n:
            raise BiosegError(f"{stem} holds labels ≥ {n}; pass --classes or --mask-values to map them")
        acc.add(stem, pred, truth)
    return _write(out, {"mask": acc}, extra, [])
