"""A run's model applied to one labelled split of its dataset, image by image, with the truth beside it:
what evaluation and post-processing tuning both walk through."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from bioseg.config import Experiment
from bioseg.data.dataset import read_head_masks, read_input, voxel_spacing
from bioseg.data.layouts import Sample, discover
from bioseg.data.splits import split_for
from bioseg.errors import BiosegError
from bioseg.inference.ensemble import check_split
from bioseg.inference.predictor import Prediction, Predictor


@dataclass
class SplitItem:
    """One image of the split: its raw pixels, the prediction, its mask (one array, or one per head for
    the multitask and zarr layouts) and its voxel size."""

    name: str
    sample: Sample
    raw: np.ndarray
    prediction: Prediction
    mask: np.ndarray | dict[str, np.ndarray]
    spacing: tuple[float, ...] | None


def split_predictor(runs: Sequence[str | Path], split: str, **infer) -> Predictor:
    """The predictor of one run, or the ensemble of several (experiment folders: all their folds), for
    scoring or tuning on ``split``; an ensemble of folds is refused on any split but test."""
    predictor = Predictor.from_runs(list(runs), **infer)
    check_split(predictor.bundles, split)
    return predictor


def results_dir(predictor: Predictor) -> Path:
    """Where a predictor's scores go: its run folder; for an ensemble, the experiment folder its members
    share, else ``ensemble/`` beside the first member."""
    runs = [b.run_dir for b in predictor.bundles]
    if len(runs) == 1:
        return runs[0]
    parents = {r.parent for r in runs}
    return parents.pop() if len(parents) == 1 else runs[0].parent / "ensemble"


def split_samples(cfg: Experiment, split: str) -> list[Sample]:
    """The samples of ``split`` (train, val or test) of the run's fold; an empty split is an error."""
    d = cfg.data
    index = discover(d.root, d.layout, d.csv)
    names = split_for(index, d.splits_dir, d.fold).get(split)
    if not names:
        raise BiosegError(f"split '{split}' of fold {d.fold} is empty; choose one of train, val, test")
    by_name = {s.name: s for s in index.samples}
    return [by_name[name] for name in names]


def predict_split(
    predictor: Predictor, samples: list[Sample], desc: str = "predicting", progress: bool = True
) -> Iterator[SplitItem]:
    """Predict each sample and read its truth, one image in memory at a time."""
    cfg = predictor.cfg
    for sample in tqdm(samples, desc=desc, disable=not progress):
        raw = read_input(sample.image, cfg.data, cfg.model.spatial_dims)
        prediction = predictor.predict(raw, name=str(sample.image))
        yield SplitItem(
            name=sample.name,
            sample=sample,
            raw=raw,
            prediction=prediction,
            mask=read_head_masks(sample, cfg),
            spacing=voxel_spacing(sample.image, cfg),
        )


def output_stem(item: SplitItem) -> str:
    """The file stem outputs of this image are written under."""
    return Path(item.name).name
