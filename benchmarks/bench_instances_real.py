"""Benchmark: instance segmentation on real data — bioseg beside a classical baseline on the same images.

Datasets (from ../shared/datasets, only read; each is skipped with a message where absent):

- ``ovules_nuclei``: the nuclei volume ``plantseg_ovules_3d/1135_mini`` (100³, 54 nuclei, voxel
  0.284 × 0.127 × 0.127 µm). One volume, so it is cut into two z-slabs of 50 planes written as separate
  TIFF files: bioseg trains on the upper slab (z < 50) and both methods are scored on the lower one.
  bioseg learns a foreground head and a boundary head; objects come from ``post.instances.mode``
  ``boundary`` (watershed of the boundary map inside the predicted foreground, then agglomeration); the
  ``foreground`` mode (distance watershed of the foreground map) of the same model is reported beside it.
- ``ovules_membrane``: the membrane volume ``plantseg_ovules_3d/sample_ovule`` (32 × 128 × 128, 50 cells
  filling the crop, voxel 0.235 × 0.15 × 0.15 µm), cut into two x-halves of 64 columns: train on x < 64,
  score on x ≥ 64. Boundary target → watershed + average agglomeration.
- ``dsb2018``: the 210 2D nuclei images (RGBA PNG, uint16 instance masks). A fixed split made by
  ``bioseg.data.splits.make_splits`` (20 % test, 15 % of the rest for validation, seed 0; ``--quick``: a
  seeded subset of 40 images); bioseg with the config ``bioseg init-config`` writes for it (its instance
  defaults: foreground + boundary heads, U-Net weight map, ``post.instances.mode boundary``). Besides F1,
  the 2018 Data Science Bowl score (mean over IoU 0.5…0.95 of tp / (tp + fp + fn)), averaged over images.

bioseg, per dataset: ``infer_config`` on the (temporary) dataset folder, then the overrides listed in the
JSON (3D: a small U-Net, bf16, post-processing parameters in µm from the voxel size; DSB: bf16 only), and
a wall-clock budget ``--minutes`` (``train.max_time_minutes``). The number of epochs is planned from a
timed training step so that the cosine schedule ends near the budget; the time limit stops it where the
machine is slower than planned. Scores come from ``bioseg.workflows.evaluate.evaluate_run`` on the test split, as
``bioseg evaluate`` computes them (objects pooled over the test images).

Baseline, on the same test images: Gaussian smoothing, Otsu threshold, distance transform (µm in 3D),
seeds at its local maxima (``skimage.feature.peak_local_max``), watershed (scikit-image): nuclei flood
``-distance`` inside the Otsu foreground (2D: the minority side of the threshold is the foreground, so
dark nuclei on bright stains work too; RGB is averaged to grey); membranes: the Otsu walls are the
boundaries, seeds lie in the distance transform of the rest, and the smoothed membrane signal is
flooded. Its two parameters (smoothing σ, seed distance) are chosen on the training part of the data
(best F1 at IoU 0.5) — the same data bioseg learns from — and then applied to the test part. bioseg's
post-processing is chosen the same way (``bioseg tune-instances --apply``: 54 points of threshold, seed
dynamic h, seed smoothing and merge threshold, on the training half of a volume or DSB's validation images); the
scores with init-config's defaults are reported beside (``bioseg_defaults``).

Charts: ``results/f1_vs_iou_<dataset>.png`` (both methods on one chart); numbers:
``results/instances_real.json``. ``--quick`` (tiny budgets, a subset of DSB) writes to a temporary folder
unless ``--out`` is given, so the stored results stay those of a full run.

    python benchmarks/bench_instances_real.py [--minutes 5] [--quick] [--datasets ovules_nuclei ...]
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import _common as C
import numpy as np
from scipy import ndimage as ndi

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
NAME = "instances_real"
DATASET_NAMES = ("ovules_nuclei", "ovules_membrane", "dsb2018")
CURVE_KEYS = ("threshold", "f1", "precision", "recall", "tp", "fp", "fn")

# 3D: one volume each, cut in two; (file stem, voxel size zyx in µm, axis of the cut)
OVULES = {
    "ovules_nuclei": ("1135_mini", (0.284, 0.127, 0.127), 0),
    "ovules_membrane": ("sample_ovule", (0.235, 0.15, 0.15), 2),
}


def log(msg: str) -> None:
    print(msg, flush=True)


# --- data -----------------------------------------------------------------------------------------


def write_halves(stem: str, voxel: tuple[float, ...], axis: int, out: Path) -> dict[str, Any]:
    """The volume cut in two along ``axis`` into ``out/{images,masks}/<stem>_{train,test}.tif`` with
    split files in ``out/splits``: train on the first half, test on the second, no validation image."""
    import tifffile

    from bioseg.io import write_tiff

    src = DATASETS / "plantseg_ovules_3d"
    image = tifffile.imread(src / "images" / f"{stem}.tif")
    mask = tifffile.imread(src / "masks" / f"{stem}.tif")
    half = image.shape[axis] // 2
    parts = {"train": slice(0, half), "test": slice(half, image.shape[axis])}
    objects = {}
    for part, sl in parts.items():
        index = [slice(None)] * 3
        index[axis] = sl
        name = f"{stem}_{part}.tif"
        write_tiff(out / "images" / name, np.ascontiguousarray(image[tuple(index)]), axes="ZYX", voxel_size=voxel)
        piece = np.ascontiguousarray(mask[tuple(index)]).astype(np.uint16)
        write_tiff(out / "masks" / name, piece, axes="ZYX", voxel_size=voxel)
        objects[part] = int(np.unique(piece[piece > 0]).size)
    splits = out / "splits"
    splits.mkdir(parents=True, exist_ok=True)
    (splits / "test.txt").write_text(f"{stem}_test\n")
    (splits / "fold_0_train.txt").write_text(f"{stem}_train\n")
    (splits / "fold_0_val.txt").write_text("")
    axis_name = "zyx"[axis]
    return {
        "volume": f"plantseg_ovules_3d/{stem}.tif {tuple(image.shape)} (ZYX)",
        "voxel_size_um": list(voxel),
        "split": f"cut along {axis_name} at {half}: train on {axis_name} < {half} ({objects['train']} objects), "
        f"test on {axis_name} >= {half} ({objects['test']} objects); objects cut by the plane count in both "
        "halves; no validation image (the final weights are kept)",
        "train_objects": objects["train"],
        "test_objects": objects["test"],
    }


def dsb_split(out: Path, quick: bool) -> tuple[Path, dict[str, Any]]:
    """Splits of DSB 2018 in ``out/splits`` (the dataset folder is only read); ``quick``: a dataset
    folder of links to a seeded subset of 40 images."""
    from bioseg.data.layouts import discover
    from bioseg.data.splits import load_split, make_splits

    root = DATASETS / "dsb2018_nuclei"
    if quick:
        names = sorted(p.name for p in (root / "images").iterdir())
        picked = np.random.default_rng(0).choice(len(names), 40, replace=False)
        sub = out / "dsb_subset"
        for folder in ("images", "masks"):
            (sub / folder).mkdir(parents=True, exist_ok=True)
            for i in sorted(picked):
                (sub / folder / names[i]).symlink_to(root / folder / names[i])
        root = sub
    index = discover(root)
    make_splits(index, folds=1, test_split=0.2, val_split=0.15, seed=0, out_dir=out / "splits")
    split = load_split(out / "splits", 0)
    protocol = {
        "images": len(index.samples),
        "split": "bioseg.data.splits.make_splits(folds=1, test_split=0.2, val_split=0.15, seed=0): "
        f"{len(split['train'])} train, {len(split['val'])} validation, {len(split['test'])} test images",
    }
    return root, protocol


def read_grey(path: Path) -> np.ndarray:
    """A 2D image as float32 grey: RGB(A) averaged over the colour channels."""
    import imageio.v3 as iio

    a = np.asarray(iio.imread(path)).astype(np.float32)
    return a if a.ndim == 2 else a[..., :3].mean(-1)


def read_any(path: Path) -> np.ndarray:
    import imageio.v3 as iio
    import tifffile

    return np.asarray(tifffile.imread(path) if path.suffix.lower() in (".tif", ".tiff") else iio.imread(path))


# --- baseline: Otsu + distance-transform watershed ------------------------------------------------------


def _seeds(dist: np.ndarray, region: np.ndarray, min_distance: int, spacing: Sequence[float]) -> np.ndarray:
    """Local maxima of ``dist`` inside ``region``, at least ``min_distance`` finest-axis voxels apart
    (scaled per axis by the spacing), as labelled markers."""
    from skimage.feature import peak_local_max

    finest = min(spacing)
    radius = [max(1, round(min_distance * finest / s)) for s in spacing]
    footprint = np.ones([2 * r + 1 for r in radius], bool)
    # the footprint keeps peaks apart per axis; min_distance also thins plateaus of equal distance
    peaks = peak_local_max(
        dist, min_distance=min(radius), footprint=footprint, labels=ndi.label(region)[0], exclude_border=False
    )
    markers = np.zeros(dist.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    return markers


def _smooth(image: np.ndarray, sigma: float, spacing: Sequence[float]) -> np.ndarray:
    finest = min(spacing)
    return ndi.gaussian_filter(image.astype(np.float32), [sigma * finest / s for s in spacing]) if sigma else image


def baseline_nuclei(
    image: np.ndarray, sigma: float, min_distance: int, spacing: Sequence[float], min_size: int = 20
) -> np.ndarray:
    """Smooth → Otsu (the minority side is the foreground) → distance transform → peaks → watershed."""
    from skimage.filters import threshold_otsu
    from skimage.segmentation import watershed

    smooth = _smooth(image, sigma, spacing)
    fg = smooth > threshold_otsu(smooth)
    if fg.mean() > 0.5:  # dark objects on a bright background (brightfield, stained tissue)
        fg = ~fg
    components, _ = ndi.label(ndi.binary_fill_holes(fg))
    fg = (np.bincount(components.ravel()) >= min_size)[components] & (components > 0)
    if not fg.any():
        return np.zeros(image.shape, np.int32)
    dist = ndi.distance_transform_edt(fg, sampling=spacing)
    markers = _seeds(dist, fg, min_distance, spacing)
    return watershed(-dist, markers, mask=fg).astype(np.int32)


def baseline_membrane(image: np.ndarray, sigma: float, min_distance: int, spacing: Sequence[float]) -> np.ndarray:
    """Smooth → Otsu walls → distance transform of the rest → peaks → watershed of the membrane signal."""
    from skimage.filters import threshold_otsu
    from skimage.segmentation import watershed

    smooth = _smooth(image, sigma, spacing)
    inside = smooth <= threshold_otsu(smooth)
    dist = ndi.distance_transform_edt(inside, sampling=spacing)
    markers = _seeds(dist, inside, min_distance, spacing)
    return watershed(smooth, markers).astype(np.int32)


BASELINE_GRID = {"sigma": (0.0, 1.0, 2.0), "min_distance": (3, 5, 7, 10, 14, 20)}


def tune_baseline(
    fn: Callable[..., np.ndarray], pairs: list[tuple[np.ndarray, np.ndarray]], spacing: Sequence[float], quick: bool
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The grid point with the best F1 at IoU 0.5 on ``pairs`` (training images), and every point tried."""
    from bioseg.metrics.instance import aggregate, match_instances

    sigmas, distances = BASELINE_GRID["sigma"], BASELINE_GRID["min_distance"]
    if quick:
        sigmas, distances = sigmas[1:2], distances[::2]
    tried = []
    for sigma, md in itertools.product(sigmas, distances):
        scores = aggregate([match_instances(fn(img, sigma, md, spacing), truth) for img, truth in pairs])
        tried.append({"sigma": sigma, "min_distance": md, "train_f1_iou50": float(scores.at(0.5)["f1"])})
    best = max(tried, key=lambda r: r["train_f1_iou50"])
    return {"sigma": best["sigma"], "min_distance": best["min_distance"]}, tried


# --- bioseg ---------------------------------------------------------------------------------------


def busy_threads(threads: int | None) -> int:
    """Torch threads: as given, else one on a busy machine (load average >= cores), where threads that
    spin-wait for each other lose more than they gain; else torch's default."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    elif hasattr(os, "getloadavg") and os.getloadavg()[0] >= (os.cpu_count() or 1):
        torch.set_num_threads(1)
    return torch.get_num_threads()


def _fastest(fn: Callable[[], None], repeats: int = 4) -> float:
    """Seconds of the fastest of ``repeats`` calls after a warm-up call: on a shared machine the slow
    calls measure others' load."""
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(min(times[1:]))


def plan_epochs(cfg: Any, minutes: float, n_val: int = 0, validations: int = 4, overhead: float = 1.2) -> dict:
    """Epochs (and validation interval) that fit ``minutes``, from timed steps of the configured model.

    A training step on a random batch of the configured patch, times the steps of an epoch and
    ``overhead`` (data, loss, logging); with ``n_val`` validation images, about ``validations``
    validations of ``n_val`` images in tiles of ``infer.patch_size`` (timed too) are set aside first.
    """
    import torch

    from bioseg.engine.trainer import resolve_precision
    from bioseg.nn.bundle import build_network

    net = build_network(cfg)
    opt = torch.optim.AdamW(net.parameters())
    x = torch.randn(cfg.data.batch_size, cfg.data.in_channels, *cfg.data.patch_size)
    precision = resolve_precision(cfg.train.precision, cfg.train.accelerator)
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed")

    def step() -> None:
        with bf16:
            loss = sum(o.float().mean() for o in net(x).values())
        loss.backward()
        opt.step()
        opt.zero_grad()

    net.train()
    step_s = _fastest(step)
    steps = max(1, cfg.data.patches_per_epoch // cfg.data.batch_size)
    val_s = 0.0
    if n_val:
        fixed = cfg.infer.patch_size not in (None, "auto")  # auto tiles hold about batch_size patches' voxels
        tile = torch.randn(1 if fixed else cfg.infer.batch_size, cfg.data.in_channels,
                           *(cfg.infer.patch_size if fixed else cfg.data.patch_size))  # fmt: skip
        net.eval()
        with torch.no_grad(), bf16:
            val_s = n_val * _fastest(lambda: net(tile), repeats=2)
    budget = minutes * 60 - validations * val_s
    epochs = int(np.clip(budget / (step_s * steps * overhead), 1, 1000))
    return {
        "step_s": step_s,
        "steps_per_epoch": steps,
        "validation_s": val_s,
        "epochs": epochs,
        "val_every": max(1, epochs // validations) if n_val else 1,
    }


def bioseg_overrides_3d(voxel: Sequence[float], mode: str) -> list[str]:
    """3D settings: a small anisotropic U-Net and post-processing lengths in µm from the voxel size."""
    xy = min(voxel)
    return [
        f"data.voxel_size=[{voxel[0]},{voxel[1]},{voxel[2]}]",
        "model.widths=[8,16,32,64]",
        "model.pool_sizes=[[1,2,2],[2,2,2],[2,2,2]]",  # z about twice as coarse: pool it from level 2
        "data.patch_size=[24,64,64]",
        "data.batch_size=2",
        "data.patches_per_epoch=48",
        "train.precision=bf16-mixed",
        "train.save_top_k=0",  # no validation image: keep the final (annealed) weights
        "optim.lr=0.006",
        "infer.patch_size=[32,128,128]",
        "infer.precision=bf16",
        f"heads.boundaries.weight_map.sigma={3 * xy:.4g}",  # 3 in-plane voxels, in µm
        f"post.instances.mode={mode}",  # the other post-processing parameters: init-config's for volumes
        "post.instances.min_size=50",
        "post.instances.min_distance=5",
    ]


def train_bioseg(
    name: str, data_dir: Path, splits: Path, work: Path, minutes: float, overrides: list[str]
) -> dict[str, Any]:
    from bioseg import config as config_mod
    from bioseg.data.splits import load_split
    from bioseg.engine.trainer import train
    from bioseg.workflows.init_config import infer_config, write_config

    raw = infer_config(data_dir, name=name)
    raw["output_dir"] = str(work / "runs")
    raw["data"]["splits_dir"] = str(splits)
    path = write_config(raw, work / f"{name}.yaml", header=f"bench_instances_real: {name} (init-config)")
    cfg = config_mod.load(path, overrides)
    plan = plan_epochs(cfg, minutes, n_val=len(load_split(splits, cfg.data.fold)["val"]))
    budget = [
        f"train.epochs={plan['epochs']}",
        f"train.val_every={plan['val_every']}",
        f"train.max_time_minutes={minutes}",
    ]
    start = time.monotonic()
    result = train(path, overrides=[*overrides, *budget], progress=False)
    train_s = time.monotonic() - start
    last = result.history[-1] if result.history else {}
    done = int(last.get("epoch", -1)) + 1
    return {
        "run_dir": result.run_dir,
        "overrides": overrides,
        "planned": plan,
        "epochs_done": done,
        "ended_by": "epochs" if done >= plan["epochs"] else "time",
        "train_s": train_s,
    }


def curve(scores: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: row[k] for k in CURVE_KEYS} for row in scores["table"]]


def summary(scores: dict[str, Any]) -> dict[str, Any]:
    row = next(r for r in scores["table"] if abs(r["threshold"] - 0.5) < 1e-9)
    return {
        "f1_iou50": row["f1"],
        "precision_iou50": row["precision"],
        "recall_iou50": row["recall"],
        "n_true": scores["n_true"],
        "n_pred": scores["n_pred"],
        "average_precision": scores["average_precision"],
        "n_merges": scores["n_merges"],
        "n_splits": scores["n_splits"],
        "curve": curve(scores),
    }


def evaluate_bioseg(run_dir: Path, alt_modes: Sequence[str] = ()) -> dict[str, Any]:
    """``evaluate_run`` on the test split (objects pooled over images); ``alt_modes``: other
    ``post.instances`` modes scored from the same predicted probabilities."""
    import tifffile

    from bioseg.config import InstanceConfig
    from bioseg.data.dataset import read_label_mask, voxel_spacing
    from bioseg.data.head_targets import instance_labels
    from bioseg.data.layouts import discover
    from bioseg.data.splits import load_split
    from bioseg.inference.instances import predict_instances
    from bioseg.inference.predictor import Predictor
    from bioseg.metrics.instance import aggregate, dsb_average_precision, match_instances
    from bioseg.workflows.evaluate import evaluate_run

    start = time.monotonic()
    result = evaluate_run(run_dir, split="test", progress=False)
    predict_s = time.monotonic() - start
    cfg = Predictor.from_run(run_dir).cfg
    d = cfg.data
    samples = {s.name: s for s in discover(d.root, d.layout, d.csv).samples}
    names = load_split(d.splits_dir, d.fold)["test"]
    truths = {n: instance_labels(read_label_mask(samples[n].mask, cfg), d.labels) for n in names}
    preds = {n: tifffile.imread(result.out_dir / f"{Path(n).name}_instances.tif") for n in names}
    out = {
        "mode": cfg.post.instances.mode,
        "instances": result.instances,  # the whole metrics_instances.json, for the chart (dropped from the JSON)
        **summary(result.instances),
        "dsb_ap_mean_over_images": float(np.mean([dsb_average_precision(preds[n], truths[n]) for n in names])),
        "foreground_dice": result.heads.get("foreground", result.scores).get("dice_mean"),
        "predict_and_score_s": predict_s,
        "predictions": str(result.out_dir),
    }
    inst = cfg.post.instances
    for mode in alt_modes:
        alt = cfg.model_copy(deep=True)
        # the foreground mode refuses the boundary options, so only the shared ones carry over; its seeds
        # stay those of the recorded results: peaks min_distance apart on the raw distance, small objects
        # removed. The threshold is a probability cut of the foreground map, not of the boundaries.
        shared = {key: getattr(inst, key) for key in ("foreground_head", "min_distance", "min_size", "max_size")}
        alt.post.instances = InstanceConfig(
            mode=mode, threshold=0.5, seed_method="min_distance", sigma_seeds=0.0, small_objects="remove", **shared
        )
        scores = []
        for n in names:
            probs = {}
            for head in cfg.heads:
                p = tifffile.imread(result.out_dir / f"{Path(n).name}_{head}_prob.tif").astype(np.float32)
                probs[head] = p.reshape(-1, *truths[n].shape)
            labels = predict_instances(probs, alt, voxel_spacing(samples[n].image, cfg))
            scores.append(match_instances(labels, truths[n]))
        out[f"mode_{mode}"] = summary(aggregate(scores).to_dict())
    return out


def tune_bioseg(run_dir: Path, split: str) -> dict[str, Any]:
    """``bioseg tune-instances --apply`` on ``split``: the post-processing chosen on labelled training
    data, as the baseline's parameters are; the test images are scored afterwards."""
    from bioseg.workflows.tune_instances import tune_run

    log(f"  bioseg: post.instances tuned on the {split} split (F1 at IoU 0.5)")
    doc = tune_run(run_dir, split=split, apply=True, progress=False)
    log(f"    configured {doc['configured']} → chosen {doc['chosen']}")
    return doc


# --- one dataset ----------------------------------------------------------------------------------


def score_baseline(
    fn: Callable[..., np.ndarray],
    train_pairs: list[tuple[np.ndarray, np.ndarray]],
    test_pairs: list[tuple[np.ndarray, np.ndarray]],
    spacing: Sequence[float],
    quick: bool,
) -> tuple[dict[str, Any], Any]:
    from bioseg.metrics.instance import aggregate, dsb_average_precision, match_instances

    params, tried = tune_baseline(fn, train_pairs, spacing, quick)
    start = time.monotonic()
    preds = [fn(img, params["sigma"], params["min_distance"], spacing) for img, _ in test_pairs]
    run_s = time.monotonic() - start
    total = aggregate([match_instances(p, t) for p, (_, t) in zip(preds, test_pairs, strict=True)])
    doc = total.to_dict()
    return {
        "method": f"{fn.__name__}: Otsu threshold + distance-transform watershed (scikit-image)",
        "params": params,
        "params_tried_on_train": tried,
        **summary(doc),
        "dsb_ap_mean_over_images": float(
            np.mean([dsb_average_precision(p, t) for p, (_, t) in zip(preds, test_pairs, strict=True)])
        ),
        "run_s": run_s,
    }, doc


def run_ovule(name: str, work: Path, minutes: float, quick: bool) -> tuple[dict[str, Any], dict, dict]:
    import tifffile

    stem, voxel, axis = OVULES[name]
    data = work / name
    protocol = write_halves(stem, voxel, axis, data)
    nuclei = name == "ovules_nuclei"
    overrides = bioseg_overrides_3d(voxel, "boundary")
    log(f"  training bioseg ({minutes:g} min budget)")
    trained = train_bioseg(name, data, data / "splits", work, minutes, overrides)
    log(f"  evaluating bioseg ({trained['epochs_done']} epochs, ended by {trained['ended_by']})")
    defaults = evaluate_bioseg(trained["run_dir"])
    tuning = tune_bioseg(trained["run_dir"], "train")
    ours = evaluate_bioseg(trained["run_dir"], alt_modes=("foreground",) if nuclei else ())
    pairs = {
        part: [
            (
                tifffile.imread(data / "images" / f"{stem}_{part}.tif"),
                tifffile.imread(data / "masks" / f"{stem}_{part}.tif").astype(np.int64),
            )
        ]
        for part in ("train", "test")
    }
    log("  baseline: parameters chosen on the training half, scored on the test half")
    fn = baseline_nuclei if nuclei else baseline_membrane
    base, base_doc = score_baseline(fn, pairs["train"], pairs["test"], voxel, quick)
    doc = {"protocol": protocol, "training": _jsonable(trained), "bioseg": ours, "bioseg_defaults": defaults}
    return {**doc, "post_tuning": tuning, "baseline": base}, ours, base_doc


def run_dsb(work: Path, minutes: float, quick: bool) -> tuple[dict[str, Any], dict, dict]:
    root, protocol = dsb_split(work, quick)
    # init-config's model, heads, losses and post-processing; a 128² training patch (4 times cheaper a
    # step than its 256², so that a CPU budget of minutes makes hundreds of steps) and bf16
    overrides = ["data.patch_size=[128,128]", "train.precision=bf16-mixed", "infer.precision=bf16"]
    log(f"  training bioseg ({minutes:g} min budget)")
    trained = train_bioseg("dsb2018", root, work / "splits", work, minutes, overrides)
    log(f"  evaluating bioseg ({trained['epochs_done']} epochs, ended by {trained['ended_by']})")
    defaults = evaluate_bioseg(trained["run_dir"])
    tuning = tune_bioseg(trained["run_dir"], "val")
    ours = evaluate_bioseg(trained["run_dir"])
    from bioseg.data.splits import load_split

    split = load_split(work / "splits", 0)

    def pairs(names: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [
            (read_grey(root / "images" / f"{n}.png"), read_any(root / "masks" / f"{n}.png").astype(np.int64))
            for n in names
        ]

    train_names = split["train"] + split["val"]
    tune_names = [train_names[i] for i in np.random.default_rng(0).permutation(len(train_names))[:40]]
    log(f"  baseline: parameters chosen on {len(tune_names)} training images, scored on the test images")
    base, base_doc = score_baseline(baseline_nuclei, pairs(tune_names), pairs(split["test"]), (1.0, 1.0), quick)
    doc = {"protocol": protocol, "training": _jsonable(trained), "bioseg": ours, "bioseg_defaults": defaults}
    return {**doc, "post_tuning": tuning, "baseline": base}, ours, base_doc


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


# --- main -----------------------------------------------------------------------------------------


def main() -> int:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=5.0, help="training budget per dataset (wall clock)")
    p.add_argument("--datasets", nargs="+", choices=DATASET_NAMES, default=list(DATASET_NAMES))
    p.add_argument("--work", type=Path, default=None, help="folder for datasets, splits and runs (default: temp)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (runs, predictions)")
    args = p.parse_args()
    minutes = 0.3 if args.quick else args.minutes
    out_dir = args.out or (Path(tempfile.mkdtemp(prefix="bioseg-inst-real-out-")) if args.quick else C.RESULTS)
    work = Path(args.work or tempfile.mkdtemp(prefix="bioseg-inst-real-"))
    work.mkdir(parents=True, exist_ok=True)
    C.quiet_lightning()
    threads = busy_threads(args.threads)
    log(f"work folder {work}; results to {out_dir}; torch threads {threads}; budget {minutes:g} min per dataset")

    from bioseg.reports.instance_charts import plot_f1_vs_iou

    results: dict[str, Any] = {}
    rows = []
    try:
        for name in args.datasets:
            source = DATASETS / ("dsb2018_nuclei" if name == "dsb2018" else "plantseg_ovules_3d")
            if not source.is_dir():
                log(f"{name}: skipped, {source} is absent")
                continue
            log(f"{name}:")
            start = time.monotonic()
            if name == "dsb2018":
                doc, ours, base_doc = run_dsb(work / name, minutes, args.quick)
            else:
                doc, ours, base_doc = run_ovule(name, work, minutes, args.quick)
            doc["budget_minutes"] = minutes
            doc["wall_s"] = time.monotonic() - start
            curves = {
                f"bioseg ({ours['mode']} mode, tuned)": ours.pop("instances"),
                "bioseg (defaults)": doc["bioseg_defaults"].pop("instances"),
                "Otsu + watershed (tuned)": base_doc,
            }
            chart = plot_f1_vs_iou(
                curves,
                out_dir / f"f1_vs_iou_{name}.png",
                title=f"{name}: F1 against the IoU threshold (test)",
            )
            doc["chart"] = str(chart.relative_to(REPO) if chart.is_relative_to(REPO) else chart)
            results[name] = doc
            b = doc["baseline"]
            rows.append(
                [name, minutes, ours["f1_iou50"], doc["bioseg_defaults"]["f1_iou50"], b["f1_iou50"],
                 ours["average_precision"], b["average_precision"], ours["dsb_ap_mean_over_images"],
                 b["dsb_ap_mean_over_images"], ours["n_true"], ours["n_pred"], b["n_pred"]]
            )  # fmt: skip
            for mode in ("foreground",):
                if f"mode_{mode}" in ours:
                    log(f"  bioseg ({mode} mode, same model): F1@0.5 {ours[f'mode_{mode}']['f1_iou50']:.3f}")
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    if not rows:
        log("no dataset found")
        return 1
    headers = ["dataset", "min", "F1@.5 bioseg", "F1@.5 defaults", "F1@.5 base", "AP bioseg", "AP base",
               "DSB-AP bioseg", "DSB-AP base", "true", "pred bioseg", "pred base"]  # fmt: skip
    log(C.table(rows, headers))
    payload = {
        "description": __doc__.split("\n\n")[0],
        "quick": args.quick,
        "torch_threads": threads,
        "ap_note": "average_precision: mean over the scored IoU thresholds (0.1 ... 0.9) of tp / (tp + fp + fn), "
        "objects pooled over the test images (as metrics_instances.json); dsb_ap_mean_over_images: the DSB 2018 "
        "score (IoU 0.5, 0.55 ... 0.95) of each test image, averaged over the images",
        "datasets": results,
    }
    path = C.write_result(NAME, payload, out_dir)
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
