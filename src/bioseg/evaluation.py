"""``bioseg evaluate``: a run on one split of its dataset, or a folder of predictions against masks."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from tqdm.auto import tqdm

from bioseg.data.layouts import discover
from bioseg.data.preprocess import map_mask
from bioseg.data.splits import load_split
from bioseg.errors import BiosegError
from bioseg.io import IMAGE_SUFFIXES, read_image, read_mask
from bioseg.metrics import confusion_matrix, scores_from_confusion


@dataclass
class EvalResult:
    out_dir: Path
    scores: dict[str, float]  # dataset level: confusion matrices summed over images
    per_image: list[dict[str, float | str]]

    @property
    def metrics_json(self) -> Path:
        return self.out_dir / "metrics.json"


class _Accumulator:
    def __init__(self, num_classes: int, class_names: list[str]) -> None:
        self.num_classes, self.class_names = num_classes, class_names
        self.total = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.rows: list[dict[str, float | str]] = []

    def add(self, name: str, pred: np.ndarray, truth: np.ndarray) -> None:
        if pred.shape != truth.shape:
            raise BiosegError(f"prediction for {name} has shape {pred.shape} but its mask has {truth.shape}")
        cm = confusion_matrix(pred, truth, self.num_classes).numpy()
        self.total += cm
        self.rows.append({"image": name, **scores_from_confusion(cm, self.class_names)})

    def write(self, out_dir: Path, extra: dict) -> EvalResult:
        out_dir.mkdir(parents=True, exist_ok=True)
        scores = scores_from_confusion(self.total, self.class_names)
        numeric = [k for k in scores]
        mean_per_image = {k: float(np.mean([r[k] for r in self.rows])) for k in numeric}
        doc = {
            **extra,
            "n_images": len(self.rows),
            "classes": self.class_names,
            "dataset": scores,
            "mean_per_image": mean_per_image,
        }
        (out_dir / "metrics.json").write_text(json.dumps(doc, indent=2))
        with (out_dir / "per_image.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["image", *numeric])
            writer.writeheader()
            writer.writerows(self.rows)
        return EvalResult(out_dir, scores, self.rows)


def evaluate_run(
    run: str | Path, split: str = "test", out_dir: str | Path | None = None, progress: bool = True, **infer
) -> EvalResult:
    """Predict the run's ``split`` (train/val/test of its fold) and score it against the masks."""
    from bioseg.inference.files import write_prediction
    from bioseg.inference.predictor import Predictor

    predictor = Predictor.from_run(run, **infer)
    cfg = predictor.cfg
    d = cfg.data
    index = discover(d.root, d.layout, d.csv)
    names = load_split(d.splits_dir or Path(d.root) / "splits", d.fold).get(split)
    if not names:
        raise BiosegError(f"split '{split}' of fold {d.fold} is empty; choose one of train, val, test")
    by_name = {s.name: s for s in index.samples}
    head = next(iter(cfg.heads))
    classes = cfg.heads[head].classes
    acc = _Accumulator(
        classes, d.classes if len(d.classes) == classes else [f"class_{i}" for i in range(classes)]
    )
    run_dir = predictor_run_dir(run)
    out = Path(out_dir) if out_dir else run_dir / "predictions" / split
    for name in tqdm(names, desc=f"evaluating {split}", disable=not progress):
        sample = by_name[name]
        raw = read_image(sample.image)
        prediction = predictor.predict(raw, name=str(sample.image))
        truth = map_mask(read_mask(sample.mask), d.mask_values, d.num_classes, str(sample.mask))
        acc.add(name, prediction.labels[head], truth)
        write_prediction(out, Path(name).name, raw, prediction, predictor)
    return acc.write(out, {"run": str(run_dir), "split": split, "fold": d.fold, "head": head})


def predictor_run_dir(run: str | Path) -> Path:
    from bioseg.engine.run_folder import find_model_dir

    return find_model_dir(run).parent


def evaluate_folders(
    pred_dir: str | Path,
    gt_dir: str | Path,
    *,
    num_classes: int | None = None,
    mask_values: dict[int, int] | None = None,
    out_dir: str | Path | None = None,
) -> EvalResult:
    """Score label images in ``pred_dir`` (``<stem>_labels.tif`` or ``<stem>.*``) against the masks
    in ``gt_dir``."""
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    for folder in (pred_dir, gt_dir):
        if not folder.is_dir():
            raise BiosegError(f"{folder} is not a folder")
    truths = {p.stem: p for p in sorted(gt_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    preds = {}
    for p in sorted(pred_dir.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith(("_prob", "_overlay")):
            preds[p.stem.removesuffix("_labels")] = p
    pairs = sorted(set(truths) & set(preds))
    if not pairs:
        raise BiosegError(
            f"no prediction in {pred_dir} matches a mask in {gt_dir} by name "
            "(expected <stem>_labels.tif beside <stem>.png, as 'bioseg predict' writes)"
        )
    missing = sorted(set(truths) - set(preds))
    if missing:
        raise BiosegError(f"{len(missing)} mask(s) in {gt_dir} have no prediction (first: {missing[0]})")
    loaded = []
    for stem in pairs:
        pred = (
            tifffile.imread(preds[stem])
            if preds[stem].suffix.lower() in (".tif", ".tiff")
            else read_mask(preds[stem])
        )
        truth = read_mask(truths[stem])
        if mask_values:
            truth = map_mask(truth, mask_values, max(mask_values.values()) + 1, str(truths[stem]))
        loaded.append((stem, np.asarray(pred).astype(np.int64), truth.astype(np.int64)))
    n = num_classes or max(2, max(int(max(p.max(), t.max())) + 1 for _, p, t in loaded))
    acc = _Accumulator(n, [f"class_{i}" for i in range(n)])
    for stem, pred, truth in loaded:
        if truth.max() >= n or pred.max() >= n:
            raise BiosegError(f"{stem} holds labels ≥ {n}; pass --classes or --mask-values to map them")
        acc.add(stem, pred, truth)
    return acc.write(
        Path(out_dir) if out_dir else pred_dir, {"predictions": str(pred_dir), "truth": str(gt_dir)}
    )
