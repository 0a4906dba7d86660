"""Choosing ``post.instances`` on labelled images: a small grid search for the best F1 at one IoU.

The defaults suit typical data; a user with a few labelled images (a validation split, or the training
images a classical method would be tuned on) gets the parameters that split their objects best. The
probability maps are predicted once; each grid point only reruns the post-processing.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from bioseg.config import Experiment
from bioseg.config.instances import InstanceConfig, unused_message, unused_options
from bioseg.data.head_targets import instance_labels
from bioseg.errors import BiosegError
from bioseg.inference.instances import predict_instances
from bioseg.metrics.instance import aggregate, match_instances
from bioseg.reports.run_report import write_run_report
from bioseg.workflows.split_predictions import predict_split, results_dir, split_predictor, split_samples

__all__ = ["default_grid", "parse_grid", "tune_instances", "tune_run"]


def default_grid(cfg: Experiment) -> dict[str, tuple[float, ...]]:
    """The parameters worth searching for ``cfg.post.instances.mode``, around the configured values.

    Lengths (``h``, ``min_distance``, ``sigma_seeds``) are numbers of voxels of the finest axis, so the
    grid is the same with or without a voxel size.
    """
    inst = cfg.post.instances
    if inst.mode not in ("boundary", "foreground"):
        raise BiosegError(f"post.instances.mode is '{inst.mode}'; set it to 'boundary' or 'foreground' to tune it")
    if inst.seed_method == "h_maxima":
        seeds: dict[str, tuple[float, ...]] = {"h": (1.0, 2.0, 4.0)}
    else:
        seeds = {"min_distance": (2, 3, 5, 8)}
    # the smoothing before the seeds decides whether small cells get one: on the ovule membranes
    # the best training F1 went from 0.75 at 2 voxels to 0.90 at 0.5
    seeds["sigma_seeds"] = (0.5, 1.0, 2.0)
    if inst.mode == "foreground":
        return {"threshold": (0.4, 0.5, 0.6), **(seeds if inst.foreground_method == "watershed" else {})}
    # boundary maps that cover much of the objects (under-trained models, the mean of disagreeing
    # ensemble members) leave small cells no seed at 0.5: on DSB 2018 nuclei the ensemble of three short
    # folds found 252 of 561 nuclei at 0.5 and 394 at 0.7 (F1 0.36 → 0.54 on held-out images)
    grid: dict[str, tuple[float, ...]] = {"threshold": (0.3, 0.5, 0.7), **seeds}
    if inst.agglomeration == "average":
        grid["merge_threshold"] = (0.3, 0.5, 0.7)
    elif inst.agglomeration != "none":
        grid["beta"] = (0.3, 0.5, 0.7)
    return grid


def parse_grid(texts: Sequence[str], instances: InstanceConfig) -> dict[str, tuple[Any, ...]]:
    """The grid written on the command line: ``["h=1,2,4", "sigma_seeds=0.5 um,1 um"]`` →
    ``{"h": (1.0, 2.0, 4.0), "sigma_seeds": ("0.5 um", "1 um")}``.

    Each value is checked as ``post.instances`` checks it (ranges, whole voxels, units) against the
    run's other settings, and stored in the config's own form; a bad one is refused in one line.
    """
    grid: dict[str, tuple[Any, ...]] = {}
    fields = type(instances).model_fields
    for text in texts:
        name, sep, values = (part.strip() for part in text.partition("="))
        if not sep or not name or not values.strip(", "):
            raise BiosegError(f"--grid {text!r}: expected NAME=V1,V2,… such as 'h=1,2,4' or 'h=0.5 um,1 um'")
        if name not in fields:
            raise BiosegError(
                f"--grid {text!r}: {name} is not a post.instances parameter; choose from {sorted(fields)}"
            )
        if name in grid:
            raise BiosegError(f"--grid names {name} twice; give all its values in one --grid {name}=V1,V2,…")
        grid[name] = tuple(_grid_value(instances, name, v.strip()) for v in values.split(",") if v.strip())
    return grid


def _grid_value(instances: InstanceConfig, name: str, text: str) -> Any:
    """``text`` as the value of ``name``: a number where it reads as one, else the string (a length
    with its unit, a method name), validated by the config's own rules."""
    try:
        value: Any = float(text)
        value = int(value) if value.is_integer() and "." not in text else value
    except ValueError:
        value = text
    try:
        checked = type(instances).model_validate({**instances.model_dump(), name: value})
    except ValidationError as err:
        reason = err.errors()[0]["msg"].removeprefix("Value error, ")
        raise BiosegError(f"--grid {name}={text}: {reason}") from None
    return getattr(checked, name)


def tune_instances(
    probabilities: Sequence[dict[str, np.ndarray]],
    truths: Sequence[np.ndarray],
    cfg: Experiment,
    spacings: Sequence[Sequence[float] | None] | None = None,
    grid: dict[str, Sequence[float]] | None = None,
    iou: float = 0.5,
    scales: Sequence[float] | None = None,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The grid point with the best F1 at ``iou`` over ``truths`` (objects pooled), and every point tried.

    Args:
        probabilities: per image, ``{head: (K, *spatial)}`` probabilities as the predictor returns them.
        truths: per image, instance labels ``(*spatial)``.
        cfg: the run's config; ``post.instances`` gives the mode and every parameter not in ``grid``.
        spacings: per image, the voxel size (None: isotropic units).
        grid: ``{parameter: values}`` of ``post.instances``; default :func:`default_grid`. Lengths are
            numbers of voxels or say their unit (``"0.5 um"``, which needs ``spacings``).
        iou: the IoU at which F1 is read.
        scales: per image, the factor it was predicted at (``Prediction.scale``; None: all 1).

    Returns:
        ``(best, tried)``: ``best`` maps each grid parameter to its chosen value; ``tried`` lists every
        point with ``f1``, ``precision``, ``recall``, ``n_pred`` (ties go to the earlier point).
    """
    if len(probabilities) != len(truths) or not truths:
        raise BiosegError(
            f"got {len(probabilities)} probability maps and {len(truths)} label images; "
            "give one labelled image per prediction, at least one"
        )
    spacings = list(spacings) if spacings is not None else [None] * len(truths)
    scales = list(scales) if scales is not None else [1.0] * len(truths)
    grid = dict(grid) if grid is not None else default_grid(cfg)
    fields = type(cfg.post.instances).model_fields
    unknown = sorted(set(grid) - set(fields))
    if unknown:
        raise BiosegError(f"cannot tune {unknown}: not a post.instances parameter; choose from {sorted(fields)}")
    inst = cfg.post.instances
    unused = unused_options(inst.mode, inst.foreground_method, grid)
    if unused:
        raise BiosegError(f"cannot tune: {unused_message(unused, inst.mode, inst.foreground_method)}")
    trial = cfg.model_copy(deep=True)
    tried: list[dict[str, Any]] = []
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values, strict=True))
        for key, value in point.items():
            setattr(trial.post.instances, key, value)
        scores = [
            match_instances(predict_instances(probs, trial, spacing, scale=scale), np.asarray(truth))
            for probs, truth, spacing, scale in zip(probabilities, truths, spacings, scales, strict=True)
        ]
        row = aggregate(scores).at(iou)
        tried.append({**point, **{k: row[k] for k in ("f1", "precision", "recall", "n_pred")}})
    best = max(tried, key=lambda r: r["f1"])  # max keeps the first of equals
    return {key: best[key] for key in grid}, tried


def tune_run(
    run: str | Path,
    split: str = "val",
    grid: dict[str, Sequence[Any]] | Sequence[str] | None = None,
    iou: float = 0.5,
    apply: bool = False,
    progress: bool = True,
    precision: str | None = None,
    ensemble: Sequence[str | Path] = (),
    tta: bool | None = None,
) -> dict[str, Any]:
    """Tune ``post.instances`` of a trained run on the labelled images of ``split`` (train, val or test).

    Writes ``instances_tuning.json`` in the run folder (the configured values, the chosen ones and every
    point tried); with ``apply`` the chosen values also go into the run's model description, so that
    ``predict`` and ``evaluate`` use them from then on. ``precision`` (auto, fp32, bf16, fp16; None: the
    run's ``infer.precision``) is the one the maps are predicted in, and is recorded. ``ensemble`` (more
    runs; an experiment folder ``run`` stands for its folds) and ``tta`` tune the objects of the averaged
    maps: with ``apply`` the values go into every member. ``grid`` is as :func:`tune_instances` takes it,
    or as written on the command line (:func:`parse_grid`). Returns that document.
    """
    predictor = split_predictor([run, *ensemble], split, precision=precision, tta=tta)
    cfg = predictor.cfg
    if cfg.post.instances.mode == "off":
        raise BiosegError(f"{run} predicts no objects (post.instances.mode is off); nothing to tune")
    if grid is not None and not isinstance(grid, dict):
        grid = parse_grid(grid, cfg.post.instances)
    grid = grid if grid is not None else default_grid(cfg)
    samples = split_samples(cfg, split)
    probabilities, truths, spacings, scales = [], [], [], []
    for item in predict_split(predictor, samples, f"predicting {split}", progress):
        if isinstance(item.mask, dict):  # multitask / zarr layouts: a mask per head, none of them object ids
            raise BiosegError(
                f"{item.sample.image} has a mask per head; tuning objects needs one instance mask per image"
            )
        probabilities.append(item.prediction.probabilities)
        truths.append(instance_labels(item.mask, cfg.data.labels))
        spacings.append(item.spacing)
        scales.append(item.prediction.scale)
    before = {key: getattr(cfg.post.instances, key) for key in grid}
    best, tried = tune_instances(probabilities, truths, cfg, spacings, grid, iou, scales)
    doc = {"split": split, "images": len(samples), "iou": iou, "precision": predictor.infer.precision,
           "members": [str(b.run_dir) for b in predictor.bundles], "tta": predictor.infer.tta,
           "configured": before, "chosen": best, "applied": apply, "tried": tried}  # fmt: skip
    for bundle in predictor.bundles if apply else []:  # model.json rewritten whole: its summary follows
        tuned = bundle.cfg.model_copy(deep=True)
        for key, value in best.items():
            setattr(tuned.post.instances, key, value)
        bundle.update_experiment(tuned)
    folder = results_dir(predictor)
    (folder / "instances_tuning.json").write_text(json.dumps(doc, indent=2))
    if (folder / "model").is_dir():  # a run folder (not an ensemble's): its report shows the tuning
        write_run_report(folder, "tune-instances")
    return doc
