"""Benchmark: test-time augmentation and fold ensembles against a single model, on real data.

Datasets (from ../shared/datasets, only read; each skipped with a message where absent):

- ``dsb2018``: the 210 2D nuclei images; ``make_splits(folds=3, test_split=0.2, seed=0)``. init-config's
  experiment (foreground + boundary heads, objects by ``post.instances.mode boundary`` at its defaults).
- ``isbi2012``: the 30 EM slices (membrane vs cell interior). The slices are consecutive sections, so the
  split is by blocks: test = the last 6 slices, fold k validates on slices 8k … 8k+7 and trains on the
  other two blocks. init-config's experiment (one binary head).

Both train every fold of a small U-Net (widths 16…128) with the same fixed budget (``--epochs`` epochs
of 128 patches of 128², stopped by ``train.max_time_minutes`` where the machine is slower: the JSON says which) —
deliberately short, so the absolute scores are those of under-trained models; the comparison is between
ways of predicting with the same weights. Four ways, each scored by ``evaluate_run`` on the test split:

- ``single``: fold 0's model; ``tta``: the same with the 8 dihedral views; ``ensemble``: the mean of the
  3 folds' models; ``ensemble_tta``: both (24 predictions per image).

Scores: test Dice (DSB: of the foreground head), DSB object F1 at IoU 0.5 (objects pooled over the test
images), the expected calibration error of the probabilities (15 bins) and the AUROC with which the
uncertainty (entropy of the mean) finds the wrong pixels — all per ``bioseg evaluate``. Then every fold
is calibrated on its own validation images (``bioseg calibrate``: one temperature per head, each member
keeps its own) and ``single`` and ``ensemble_tta`` are scored again (``*_calibrated``). Time: seconds to
predict the first ``--timed`` test images (probabilities, labels and uncertainty; no files), as a ratio to
the single model measured before and after the others in the same process.

    python benchmarks/bench_ensembles.py [--epochs 20] [--minutes 0] [--datasets dsb2018 isbi2012]
        [--out DIR] [--work DIR]

``--minutes 0`` (the default) sets no time limit, so every fold trains the same number of epochs however
loaded the machine is.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as C

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
NAME = "ensembles"
SETTINGS = {  # name: (members, tta)
    "single": (1, False),
    "tta": (1, True),
    "ensemble": (3, False),
    "ensemble_tta": (3, True),
}


def log(msg: str) -> None:
    print(msg, flush=True)


def isbi_blocks(out: Path) -> Path:
    """Split files of ISBI 2012 by contiguous blocks (see the module's description)."""
    from bioseg.data.layouts import discover, natural_key

    names = sorted(discover(DATASETS / "isbi2012_em").names, key=natural_key)
    test, rest = names[24:], names[:24]
    out.mkdir(parents=True, exist_ok=True)
    (out / "test.txt").write_text("".join(f"{n}\n" for n in test))
    for k in range(3):
        val = rest[8 * k : 8 * k + 8]
        train = [n for n in rest if n not in val]
        (out / f"fold_{k}_val.txt").write_text("".join(f"{n}\n" for n in val))
        (out / f"fold_{k}_train.txt").write_text("".join(f"{n}\n" for n in train))
    return out


def dsb_splits(out: Path) -> Path:
    from bioseg.data.layouts import discover
    from bioseg.data.splits import make_splits

    return make_splits(discover(DATASETS / "dsb2018_nuclei"), folds=3, test_split=0.2, seed=0, out_dir=out)


def train_folds(name: str, root: Path, splits: Path, work: Path, epochs: int, minutes: float) -> dict[str, Any]:
    """init-config's experiment with the small budget, every fold trained (``train --fold all``)."""
    from bioseg.engine.folds import train_folds as train_all
    from bioseg.workflows.init_config import infer_config, write_config

    raw = infer_config(root, name=name)
    raw["output_dir"] = str(work / "runs")
    raw["data"]["splits_dir"] = str(splits)
    path = write_config(raw, work / f"{name}.yaml", header=f"bench_ensembles: {name} (init-config)")
    overrides = [
        "data.patch_size=[128,128]",
        "model.widths=[16,32,64,128]",
        "data.patches_per_epoch=128",
        f"train.epochs={epochs}",
        f"train.val_every={max(1, epochs // 2)}",
        "train.snapshots=0",
        "train.animation=false",
    ] + ([f"train.max_time_minutes={minutes}"] if minutes else [])
    start = time.monotonic()
    outcomes = train_all(path, overrides=overrides, progress=False)
    folds = []
    for o in outcomes:
        done = int(o.result.history[-1]["epoch"]) + 1 if o.result and o.result.history else None
        folds.append({"fold": o.fold, "status": o.status, "epochs_done": done,
                      "ended_by": None if done is None else ("epochs" if done >= epochs else "time")})  # fmt: skip
    return {"overrides": overrides, "train_s": time.monotonic() - start, "folds": folds,
            "experiment": outcomes[0].run_dir.parent}  # fmt: skip


def calibrate(experiment: Path) -> dict[str, Any]:
    """``bioseg calibrate`` on every fold (validation split); the temperatures go into each fold's model."""
    from bioseg.workflows.calibrate import calibrate_run

    folds = {}
    for k in range(3):
        doc = calibrate_run(experiment / f"fold_{k}", progress=False)
        folds[f"fold_{k}"] = {h: {key: v[key] for key in ("temperature", "ece_before", "ece_after")}
                              for h, v in doc["heads"].items()}  # fmt: skip
    return folds


def score(experiment: Path, setting: str, out: Path) -> dict[str, Any]:
    from bioseg.workflows.evaluate import evaluate_run

    members, tta = SETTINGS[setting.removesuffix("_calibrated")]
    others = [experiment / f"fold_{k}" for k in range(1, members)]
    result = evaluate_run(experiment / "fold_0", "test", out / setting, False, ensemble=others, tta=tta)
    first_head = next(iter(result.calibration))
    row: dict[str, Any] = {
        "dice": result.scores["dice_mean"],
        "ece": result.calibration[first_head]["ece"],
        "uncertainty_auroc": result.calibration[first_head]["uncertainty_auroc"],
        "head": first_head,
    }
    if result.instances is not None:
        at = next(r for r in result.instances["table"] if abs(r["threshold"] - 0.5) < 1e-6)
        row["f1_at_iou_0.5"] = at["f1"]
    return row


def timed(experiment: Path, images: list, setting: str) -> float:
    from bioseg.inference.predictor import Predictor

    members, tta = SETTINGS[setting]
    predictor = Predictor.from_runs([experiment / f"fold_{k}" for k in range(members)], tta=tta)
    start = time.perf_counter()
    for raw in images:
        predictor.predict(raw)
    return time.perf_counter() - start


def timings(experiment: Path, n: int) -> dict[str, Any]:
    from bioseg.data.dataset import read_input
    from bioseg.inference.predictor import Predictor
    from bioseg.workflows.split_predictions import split_samples

    cfg = Predictor.from_run(experiment / "fold_0").cfg
    images = [read_input(s.image, cfg.data, 2) for s in split_samples(cfg, "test")[:n]]
    seconds = {"single_before": timed(experiment, images, "single")}
    for setting in ("tta", "ensemble", "ensemble_tta"):
        seconds[setting] = timed(experiment, images, setting)
    seconds["single_after"] = timed(experiment, images, "single")
    base = (seconds["single_before"] + seconds["single_after"]) / 2
    ratios = {s: seconds[s] / base for s in ("tta", "ensemble", "ensemble_tta")}
    return {"images": len(images), "seconds": seconds, "ratio_to_single": ratios}


def run(name: str, work: Path, epochs: int, minutes: float, timed_images: int) -> dict[str, Any]:
    folder = {"dsb2018": "dsb2018_nuclei", "isbi2012": "isbi2012_em"}[name]
    root = DATASETS / folder
    splits = dsb_splits(work / "splits") if name == "dsb2018" else isbi_blocks(work / "splits")
    log(f"{name}: training 3 folds ({epochs} epochs, at most {minutes:g} min each)")
    training = train_folds(name, root, splits, work, epochs, minutes)
    experiment = training.pop("experiment")
    rows = {}
    for setting in SETTINGS:
        log(f"  scoring {setting}")
        rows[setting] = score(experiment, setting, work / "eval")
    log("  calibrating every fold")
    calibration = calibrate(experiment)
    for setting in ("single", "ensemble_tta"):
        log(f"  scoring {setting}, calibrated")
        rows[f"{setting}_calibrated"] = score(experiment, f"{setting}_calibrated", work / "eval")
    log("  timing")
    return {"training": training, "scores": rows, "calibration": calibration,
            "time": timings(experiment, timed_images)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=0, help="training time limit per fold (0: none)")
    parser.add_argument("--timed", type=int, default=8, help="test images timed per setting")
    parser.add_argument("--datasets", nargs="+", default=["dsb2018", "isbi2012"])
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("--work", type=Path, default=None, help="keep the trained runs here (default: deleted)")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            folder = {"dsb2018": "dsb2018_nuclei", "isbi2012": "isbi2012_em"}[name]
            if not (DATASETS / folder).is_dir():
                log(f"{name}: {DATASETS / folder} is absent, skipped")
                continue
            results[name] = run(name, (args.work or Path(tmp)) / name, args.epochs, args.minutes, args.timed)
            for setting, row in results[name]["scores"].items():
                log(f"  {setting}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if isinstance(v, float)))
            log(f"  time ratio to a single pass: {results[name]['time']['ratio_to_single']}")
    protocol = {"epochs": args.epochs, "minutes_per_fold": args.minutes, "settings": SETTINGS}
    path = C.write_result(NAME, {"protocol": protocol, "results": results}, args.out)
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
