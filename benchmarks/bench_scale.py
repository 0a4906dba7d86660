"""Benchmark: objects at other magnifications — F1 and Dice of test images resized by 0.5 … 2.

Users bring images taken at another magnification than the training images. This simulates it on the
real data in ../shared/datasets, training and tuning on those datasets only: the test images (and their
masks, nearest) are resized by 0.5, 0.75, 1, 1.5 and 2, and each model predicts them with ``infer.rescale``
off and ``auto`` by each of its two estimates of the object size: a first prediction at the image's own
scale, and the size model (:mod:`bioseg.inference.size_model`); ``auto`` is the one the model chose at
the end of its training. Models: init-config's, trained for a wall-clock budget (``--minutes``) or a
fixed number of epochs (``--epochs``), without and with scale augmentation (``{name: scale, p: 0.5,
range: …}``, a wide and a narrow range: :data:`MODELS`).

- ``dsb2018``: the 210 DSB 2018 nuclei images, the split of bench_instances_real (make_splits, 20 % test,
  seed 0); init-config's instance set-up (foreground + boundary heads, boundary mode), 128² patches, bf16.
- ``isbi2012``: the 30 ISBI 2012 EM slices, split in contiguous blocks (train 0–19, validation 20–23,
  test 24–29: neighbouring slices look alike); init-config's semantic set-up (cell interior against
  membrane), objects = connected components of the predicted interior (``post.instances`` foreground,
  components), true objects = connected components of the true interior.

Reported per dataset, model, rescale mode and factor: F1 at IoU 0.5 (objects pooled over the test
images), foreground Dice (pooled), the median factor applied; the target is F1 within 0.05 of the
model's F1 at 1× without rescaling, at every factor. Numbers: ``results/scale.json``; ``--quick``
writes to a temporary folder.

    python benchmarks/bench_scale.py [--minutes 6 | --epochs dsb2018=20 isbi2012=4] [--quick]
        [--datasets dsb2018 isbi2012] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as C
import numpy as np
from bench_instances_real import DATASETS, dsb_split, log, plan_epochs

FACTORS = (0.5, 0.75, 1.0, 1.5, 2.0)
#: the models compared: init-config's augmentation, plus scale augmentation over a wide and a narrow range
MODELS = {
    "no_scale_aug": None,
    "scale_aug": {"name": "scale", "p": 0.5, "range": [0.5, 2.0]},
    "scale_aug_narrow": {"name": "scale", "p": 0.5, "range": [0.75, 1.33]},
}


def isbi_split(out: Path) -> tuple[Path, dict[str, Any]]:
    root = DATASETS / "isbi2012_em"
    names = sorted((p.stem for p in (root / "images").glob("*.png")), key=int)
    splits = out / "splits_isbi"
    splits.mkdir(parents=True, exist_ok=True)
    (splits / "fold_0_train.txt").write_text("\n".join(names[:20]) + "\n")
    (splits / "fold_0_val.txt").write_text("\n".join(names[20:24]) + "\n")
    (splits / "test.txt").write_text("\n".join(names[24:]) + "\n")
    return root, {"images": len(names), "split": "contiguous: train 0–19, validation 20–23, test 24–29"}


def train_model(
    name: str, root: Path, splits: Path, work: Path, minutes: float, overrides: list[str], augment: dict | None,
    epochs: int | None = None,
) -> dict[str, Any]:
    from bioseg import config as config_mod
    from bioseg.data.splits import load_split
    from bioseg.engine.trainer import train
    from bioseg.workflows.init_config import infer_config, write_config

    run_dir = work / "runs" / name / "fold_0"
    done_before = work / f"{name}.json"
    if (run_dir / "model" / "model.json").is_file() and done_before.is_file():  # --work of an earlier run
        return {**json.loads(done_before.read_text()), "run_dir": run_dir}
    raw = infer_config(root, name=name)
    raw["output_dir"] = str(work / "runs")
    raw["data"]["splits_dir"] = str(splits)
    raw["augment"] = [a for a in raw["augment"] if a["name"] != "scale"] + ([augment] if augment else [])
    path = write_config(raw, work / f"{name}.yaml", header=f"bench_scale: {name}")
    cfg = config_mod.load(path, overrides)
    if epochs is None:  # a wall-clock budget: the epochs it allows, stopped at the minutes in any case
        plan = plan_epochs(cfg, minutes, n_val=len(load_split(splits, 0)["val"]))
        budget = [f"train.epochs={plan['epochs']}", f"train.val_every={plan['val_every']}",
                  f"train.max_time_minutes={minutes}"]  # fmt: skip
    else:  # equal epochs for every model, whatever the machine's load
        plan = {"epochs": epochs}
        budget = [f"train.epochs={epochs}", f"train.val_every={max(1, epochs // 4)}", "train.max_time_minutes=null"]
    start = time.monotonic()
    result = train(path, overrides=[*overrides, *budget], progress=False)
    done = int(result.history[-1]["epoch"]) + 1 if result.history else 0
    info = {"augment": augment, "planned_epochs": plan["epochs"], "epochs_done": done,
            "train_s": round(time.monotonic() - start, 1)}  # fmt: skip
    done_before.write_text(json.dumps(info))
    return {**info, "run_dir": result.run_dir}


def test_pairs(root: Path, splits: Path, cfg: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """(raw image as bioseg reads it, true objects) of each test image."""
    from scipy import ndimage as ndi

    from bioseg.data.dataset import read_input, read_label_mask
    from bioseg.data.layouts import discover
    from bioseg.data.splits import load_split

    by_name = {s.name: s for s in discover(root).samples}
    pairs = []
    for name in load_split(splits, 0)["test"]:
        sample = by_name[name]
        mask = read_label_mask(sample.mask, cfg)
        truth = mask if cfg.data.labels == "instance" else ndi.label(mask > 0)[0]
        pairs.append((read_input(sample.image, cfg.data, 2), truth.astype(np.int64)))
    return pairs


def score(predictor: Any, pairs: list[tuple[np.ndarray, np.ndarray]], factor: float) -> dict[str, Any]:
    """F1@0.5 (objects pooled), foreground Dice (pooled) and the factors applied, on ``pairs`` resized."""
    from bioseg.data.resize import resample
    from bioseg.inference.instances import predict_instances
    from bioseg.inference.rescale import reference_head, scaled_shape
    from bioseg.metrics.instance import aggregate, match_instances

    cfg = predictor.cfg
    head = reference_head(cfg)
    matches, inter, total, applied = [], 0, 0, []
    start = time.perf_counter()
    for raw, truth in pairs:
        shape = scaled_shape(truth.shape, factor)
        image = resample(raw.astype(np.float32), shape, nearest=False)
        true = resample(truth[None], shape, nearest=True)[0]
        prediction = predictor.predict(image)
        objects = predict_instances(prediction.probabilities, cfg, None, scale=prediction.scale)
        matches.append(match_instances(objects, true))
        fg = prediction.labels[head] > 0
        inter += int((fg & (true > 0)).sum())
        total += int(fg.sum() + (true > 0).sum())
        applied.append(prediction.scale)
    row = aggregate(matches).at(0.5)
    return {"f1": round(float(row["f1"]), 4), "dice": round(2 * inter / max(total, 1), 4),
            "n_true": int(row["n_true"]), "n_pred": int(row["n_pred"]),
            "scale_median": round(float(np.median(applied)), 3),
            "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip


def measure_reference(run_dir: Path, root: Path, splits: Path) -> None:
    """Runs trained before the model measured its own predicted sizes or fitted its size model: measure
    and fit them now, as training does."""
    from bioseg.data.datamodule import load_samples
    from bioseg.data.layouts import discover
    from bioseg.data.splits import load_split
    from bioseg.engine.trainer import training_objects
    from bioseg.nn.bundle import ModelBundle, write_meta

    bundle = ModelBundle.load(run_dir)
    if bundle.objects is None or "size_model" in bundle.objects:
        return
    split = load_split(splits, 0)
    train, val = (load_samples(discover(root), split[part], bundle.cfg, "val", progress=False)
                  for part in ("train", "val"))  # fmt: skip
    write_meta(bundle.model_dir, bundle.cfg, training_objects(bundle.cfg, train, bundle.net, val))


#: how ``rescale`` finds the factor: not at all, by a first prediction, by the size model
MODES = ("off", "first_pass", "size_model")


def evaluate(run_dir: Path, pairs: list, cached: dict[str, Any]) -> dict[str, Any]:
    from bioseg.inference.predictor import Predictor

    out: dict[str, Any] = {}
    for mode in MODES:
        if mode in cached:
            out[mode] = cached[mode]
            continue
        predictor = Predictor.from_run(run_dir, rescale="off" if mode == "off" else "auto")
        if mode != "off":  # either estimate, whichever the model chose at the end of its training
            predictor.objects = {**predictor.objects, "size_model": {**predictor.objects["size_model"],
                                                                     "use": mode == "size_model"}}  # fmt: skip
        out[mode] = {str(f): score(predictor, pairs, f) for f in FACTORS}
        log(f"    {mode}: " + ", ".join(f"{f}× F1 {v['f1']:.3f}" for f, v in out[mode].items()))
    return out


def run_dataset(
    name: str, work: Path, minutes: float, quick: bool, epochs: int | None = None, models: list[str] | None = None
) -> dict[str, Any]:
    from bioseg import config as config_mod

    if name == "dsb2018":
        root, protocol = dsb_split(work, quick)
        splits = work / "splits"
        overrides = ["data.patch_size=[128,128]", "train.precision=bf16-mixed", "infer.precision=bf16"]
    else:
        root, protocol = isbi_split(work)
        splits = work / "splits_isbi"
        overrides = ["train.precision=bf16-mixed", "infer.precision=bf16", "post.instances.mode=foreground",
                     "post.instances.foreground_method=components", "post.instances.min_size=20"]  # fmt: skip
    doc: dict[str, Any] = {"protocol": protocol, "models": {}}
    for label, augment in MODELS.items():
        if models and label not in models:
            continue
        log(f"  {name}: training {label} ({f'{epochs} epochs' if epochs else f'{minutes:g} min'})")
        trained = train_model(f"{name}_{label}", root, splits, work, minutes, overrides, augment, epochs)
        cfg = config_mod.load(Path(trained["run_dir"]) / "config.yaml")
        pairs = test_pairs(root, splits, cfg)
        measure_reference(Path(trained["run_dir"]), root, splits)
        scored = work / f"{name}_{label}_scores.json"  # --work of an earlier run: its scores, same code
        scores = evaluate(trained["run_dir"], pairs, json.loads(scored.read_text()) if scored.is_file() else {})
        scored.write_text(json.dumps(scores))
        model = json.loads((Path(trained["run_dir"]) / "model" / "model.json").read_text())
        objects = model.get("objects") or {}
        chosen = "size_model" if (objects.get("size_model") or {}).get("use") else "first_pass"
        sizes = {k: v for k, v in objects.items() if k != "size_model"}  # the fitted weights stay in the run
        check = (objects.get("size_model") or {}).get("check")
        doc["models"][label] = {**trained, "run_dir": str(trained["run_dir"]), "objects": sizes,
                                "size_model_check": check, "auto_uses": chosen,
                                "scores": {**scores, "auto": scores[chosen]}}  # fmt: skip
    return doc


def verdicts(doc: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for dataset, d in doc["datasets"].items():
        for model, m in d["models"].items():
            base = m["scores"]["off"]["1.0"]["f1"]  # the model on images at its own scale, as trained
            for mode, by_factor in m["scores"].items():
                worst = min(v["f1"] - base for v in by_factor.values())
                rows.append([dataset, model, mode, *(f"{by_factor[str(f)]['f1']:.3f}" for f in FACTORS),
                             f"{worst:+.3f}", "yes" if worst >= -0.05 else "no"])  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=6.0, help="training budget per model")
    parser.add_argument("--quick", action="store_true", help="tiny budgets, a DSB subset, temporary output")
    parser.add_argument("--datasets", nargs="+", default=["dsb2018", "isbi2012"])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=None, help="keep the trained runs here (reused when present)")
    parser.add_argument("--epochs", nargs="+", default=[], metavar="DATASET=N",
                        help="train each model of DATASET for N epochs without a time limit (equal epochs)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    epochs = {k: int(v) for k, v in (item.split("=") for item in args.epochs)}
    if not DATASETS.is_dir():
        print(f"skipped: {DATASETS} is absent (the real datasets this benchmark needs)")
        return 0
    minutes = 0.5 if args.quick else args.minutes
    out_dir = args.out or (Path(tempfile.mkdtemp()) if args.quick else C.RESULTS)
    doc: dict[str, Any] = {"machine": C.machine(), "factors": list(FACTORS), "models": MODELS,
                           "minutes_per_model": None if epochs else minutes, "epochs": epochs or None,
                           "datasets": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        for name in args.datasets:
            doc["datasets"][name] = run_dataset(name, work, minutes, args.quick, epochs.get(name), args.models)
    headers = ["dataset", "model", "rescale", *(f"F1 {f}×" for f in FACTORS), "worst − off 1×", "within 0.05"]
    print(C.table(verdicts(doc), headers))
    C.write_result("scale", doc, out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
