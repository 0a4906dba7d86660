"""Benchmark 4: accuracy on real data after a fixed wall-clock training budget, against a plain reference.

Datasets (from ../shared/datasets; each is skipped with a message where absent):

- ISBI 2012 EM (30 slices of 512²; mask 0 = membrane): train on slices 0–23, test on slices 24–29 at full
  resolution; membrane Dice and IoU. bioseg takes slices 0–20 for gradient steps and 21–23 as its
  validation set (best-checkpoint choice); the reference trains on all of 0–23 and keeps its last weights.
- DSB 2018 nuclei (210 images, instance masks): a seeded split made by ``bioseg.data.splits.make_splits``
  (20 % test, 15 % of the rest for validation, seed 0); foreground (nucleus) Dice on the test images.
  The reference trains on train + validation.

bioseg: the config ``bioseg init-config`` writes for the dataset (``bioseg.workflows.init_config.infer_config``), with
ISBI's membrane made the foreground class (``data.mask_values {0: 1, 255: 0}``), split files in a temporary
folder, and ``train.max_time_minutes`` set to the budget with ``train.epochs`` large enough that the
budget, not the epoch count, ends training (as it ends the reference's; the cosine schedule follows the
clock); ``--set key=value`` adds overrides. Prediction
uses ``Predictor.from_run`` on the run folder, as ``bioseg predict`` does.

Reference: a plain PyTorch loop training MONAI's ``BasicUNet`` (2 output classes) with ``DiceCELoss``
(softmax, one-hot) and Adam (lr 1e-3) for the same wall-clock time: batches of 8 random 256² crops with
random flips and 90° rotations, intensities / 255, bf16 autocast; prediction with MONAI's
``sliding_window_inference`` (patch 256, overlap 0.25, Gaussian), float32.

Scores are pooled over all test pixels (sum of intersections / sum of sizes); the mean over images is in
the JSON too. Split files and runs go to a temporary folder (``--keep DIR`` keeps them); the datasets are
only read.

    python benchmarks/bench_accuracy.py [--minutes 10] [--datasets isbi dsb] [--set train.precision=bf16-mixed]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as C
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
TARGET_MARGIN = 0.02  # ISBI: bioseg's membrane Dice minus the reference's
BUDGET_EPOCHS = 10_000  # more than any budget allows: the clock ends bioseg's training, as the reference's


# --- data -----------------------------------------------------------------------------------------


def read_rgb_or_grey(path: Path) -> np.ndarray:
    """``(C, Y, X)`` uint8: grey images as one channel, colour as RGB (alpha dropped)."""
    import imageio.v3 as iio

    a = np.asarray(iio.imread(path))
    if a.ndim == 2:
        return a[None]
    return np.moveaxis(a[..., :3], -1, 0)


def read_labels(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    a = np.asarray(iio.imread(path))
    return a[..., 0] if a.ndim == 3 else a


def isbi_split() -> dict[str, list[str]]:
    return {
        "train": [str(i) for i in range(21)],
        "val": [str(i) for i in range(21, 24)],
        "test": [str(i) for i in range(24, 30)],
    }


def write_split(split: dict[str, list[str]], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fold_0_train.txt").write_text("\n".join(split["train"]) + "\n")
    (folder / "fold_0_val.txt").write_text("\n".join(split["val"]) + "\n")
    (folder / "test.txt").write_text("\n".join(split["test"]) + "\n")
    return folder


def dsb_split(root: Path, folder: Path) -> dict[str, list[str]]:
    from bioseg.data.layouts import discover
    from bioseg.data.splits import load_split, make_splits

    make_splits(discover(root), folds=1, test_split=0.2, val_split=0.15, seed=0, out_dir=folder)
    return load_split(folder, 0)


def find_file(folder: Path, stem: str) -> Path:
    matches = sorted(p for p in folder.iterdir() if p.stem == stem)
    if not matches:
        raise FileNotFoundError(f"no file named {stem}.* in {folder}")
    return matches[0]


# --- scores ---------------------------------------------------------------------------------------


def scores(preds: list[np.ndarray], truths: list[np.ndarray]) -> dict[str, Any]:
    """Foreground Dice and IoU pooled over all pixels, and their means over images."""
    inter = union = total = 0
    per_image = []
    for p, t in zip(preds, truths, strict=True):
        p, t = p.astype(bool), t.astype(bool)
        i, s = int((p & t).sum()), int(p.sum() + t.sum())
        inter, total, union = inter + i, total + s, union + s - i
        per_image.append({"dice": 2 * i / s if s else 1.0, "iou": i / (s - i) if s - i else 1.0})
    return {
        "dice": 2 * inter / total if total else 1.0,
        "iou": inter / union if union else 1.0,
        "dice_mean_over_images": float(np.mean([r["dice"] for r in per_image])),
        "iou_mean_over_images": float(np.mean([r["iou"] for r in per_image])),
        "per_image": per_image,
    }


# --- bioseg ---------------------------------------------------------------------------------------


def bioseg_config(name: str, root: Path, splits: Path, runs: Path, minutes: float) -> dict[str, Any]:
    from bioseg.workflows.init_config import infer_config

    cfg = infer_config(root, name=name)
    cfg["output_dir"] = str(runs)
    cfg["data"]["splits_dir"] = str(splits)
    cfg.setdefault("train", {})["max_time_minutes"] = minutes
    cfg["train"]["epochs"] = BUDGET_EPOCHS
    if name == "isbi":  # 0 in the files is membrane: make it the foreground class
        cfg["data"]["mask_values"] = {0: 1, 255: 0}
        cfg["data"]["classes"] = ["cytoplasm", "membrane"]
    return cfg


def resolved_precision(cfg: Any) -> str:
    """What ``train.precision`` meant on this machine (``auto`` resolves to 32 or bf16-mixed)."""
    try:
        from bioseg.engine.trainer import resolve_precision
    except ImportError:
        return str(cfg.train.precision)
    return str(resolve_precision(cfg.train.precision, cfg.train.accelerator))


def foreground_head(cfg: Any) -> str:
    """The head whose labels > 0 are the foreground: a 'foreground' target, else the first 'mask' head."""
    heads = cfg.heads
    for wanted in ("foreground", "mask"):
        for name, head in heads.items():
            if getattr(head, "target", "mask") == wanted:
                return name
    return next(iter(heads))


def run_bioseg(
    name: str, root: Path, split: dict[str, list[str]], splits: Path, work: Path, args: Any, truth: Any
) -> dict[str, Any]:
    import bioseg
    from bioseg.inference.predictor import Predictor

    cfg = bioseg_config(name, root, splits, work / "runs", args.minutes)
    start = time.monotonic()
    result = bioseg.train(cfg, overrides=list(args.set or []), progress=False)
    train_s = time.monotonic() - start
    from bioseg.inference.precision import autocast_dtype

    predictor = Predictor.from_run(result.run_dir)
    head = foreground_head(predictor.cfg)
    truths = [truth(read_labels(find_file(root / "masks", stem))) for stem in split["test"]]
    # the run's own inference settings score the run; both precisions are compared on the side
    by_precision: dict[str, Any] = {}
    for precision in ("fp32", "bf16"):
        p = Predictor.from_run(result.run_dir, precision=precision)
        start = time.monotonic()
        preds = [p.predict_file(find_file(root / "images", stem)).labels[head] > 0 for stem in split["test"]]
        by_precision[precision] = {"preds": preds, "predict_s": time.monotonic() - start}
    # "auto" means bf16 where the CPU runs it natively: score the run with what auto resolved to
    native = autocast_dtype(predictor.device, predictor.infer.precision) == torch.bfloat16
    own = by_precision["bf16" if native else "fp32"]
    agreement = scores(by_precision["bf16"]["preds"], by_precision["fp32"]["preds"])
    precision_check = {
        k: {"dice": scores(v["preds"], truths)["dice"], "predict_s": v["predict_s"]} for k, v in by_precision.items()
    }
    precision_check["dice_bf16_vs_fp32"] = agreement["dice"]
    preds, predict_s = own["preds"], own["predict_s"]
    last = result.history[-1] if result.history else {}
    epochs_cfg = predictor.cfg.train.epochs
    epochs_done = int(last.get("epoch", -1)) + 1
    return {
        **scores(preds, truths),
        "train_s": train_s,
        "predict_s": predict_s,
        "steps": int(last.get("step", 0)),
        "epochs": epochs_done,
        "ended_by": "epochs" if epochs_done >= epochs_cfg else "time",
        "best_val": result.best_score,
        "monitor": result.monitor,
        "overrides": list(args.set or []),
        "precision": predictor.cfg.train.precision,
        "precision_resolved": resolved_precision(predictor.cfg),
        "batch_size": predictor.cfg.data.batch_size,
        "patch_size": predictor.cfg.data.patch_size,
        "head": head,
        "infer_precision": predictor.infer.precision,
        "precision_check": precision_check,
    }


# --- reference ------------------------------------------------------------------------------------


def augment_crop(
    image: np.ndarray, target: np.ndarray, patch: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A random ``patch``² crop (reflect-padded if needed), random flips and quarter turns."""
    pad = [(0, 0)] + [(0, max(0, patch - s)) for s in image.shape[1:]]
    if any(p[1] for p in pad):
        image, target = np.pad(image, pad, mode="reflect"), np.pad(target, pad[1:], mode="reflect")
    y = int(rng.integers(0, image.shape[1] - patch + 1))
    x = int(rng.integers(0, image.shape[2] - patch + 1))
    image, target = image[:, y : y + patch, x : x + patch], target[y : y + patch, x : x + patch]
    if rng.random() < 0.5:
        image, target = image[:, :, ::-1], target[:, ::-1]
    if rng.random() < 0.5:
        image, target = image[:, ::-1], target[::-1]
    k = int(rng.integers(4))
    return np.rot90(image, k, axes=(1, 2)), np.rot90(target, k)


def run_reference(
    root: Path, train: list[str], test: list[str], truth: Any, minutes: float, args: Any, log: Any = print
) -> dict[str, Any]:
    from monai.inferers import sliding_window_inference
    from monai.losses import DiceCELoss
    from monai.networks.nets import BasicUNet

    images = [read_rgb_or_grey(find_file(root / "images", s)).astype(np.float32) / 255 for s in train]
    targets = [truth(read_labels(find_file(root / "masks", s))).astype(np.int64) for s in train]
    channels = max(im.shape[0] for im in images)
    images = [np.repeat(im, channels, 0) if im.shape[0] < channels else im for im in images]
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    net = BasicUNet(spatial_dims=2, in_channels=channels, out_channels=2)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    patch, batch = args.ref_patch, args.ref_batch
    net.train()
    steps = 0
    start = time.monotonic()
    deadline = start + minutes * 60
    while time.monotonic() < deadline:
        picks = [augment_crop(images[k], targets[k], patch, rng) for k in rng.integers(0, len(images), batch)]
        x = torch.from_numpy(np.stack([np.ascontiguousarray(p[0]) for p in picks]))
        y = torch.from_numpy(np.stack([np.ascontiguousarray(p[1]) for p in picks]))[:, None]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = net(x)
        loss = loss_fn(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
    train_s = time.monotonic() - start
    log(f"  reference: {steps} steps in {train_s:.0f} s (last loss {float(loss.detach()):.3f})")
    net.eval()
    preds, truths = [], []
    with torch.inference_mode():
        for stem in test:
            im = read_rgb_or_grey(find_file(root / "images", stem)).astype(np.float32) / 255
            im = np.repeat(im, channels, 0) if im.shape[0] < channels else im
            x = torch.from_numpy(im)[None]
            logits = sliding_window_inference(x, (patch, patch), 4, net, overlap=0.25, mode="gaussian")
            preds.append(logits[0].argmax(0).numpy() == 1)
            truths.append(truth(read_labels(find_file(root / "masks", stem))))
    return {
        **scores(preds, truths),
        "train_s": train_s,
        "steps": steps,
        "batch": batch,
        "patch": patch,
        "model": "monai BasicUNet (features 32,32,64,128,256,32)",
    }


# --- driver ---------------------------------------------------------------------------------------


def run_dataset(name: str, args: Any, work: Path, log: Any = print) -> dict[str, Any]:
    folder = {"isbi": "isbi2012_em", "dsb": "dsb2018_nuclei"}[name]
    root = args.datasets_root / folder
    if not (root / "images").is_dir():
        msg = f"skipped: {root} is absent"
        log(f"{name}: {msg}")
        return {"skipped": msg}
    splits = work / name / "splits"
    if name == "isbi":
        split = isbi_split()
        write_split(split, splits)
        reference_train = split["train"] + split["val"]  # slices 0-23

        def truth(mask: np.ndarray) -> np.ndarray:
            return mask == 0  # membrane
    else:
        split = dsb_split(root, splits)
        reference_train = split["train"] + split["val"]

        def truth(mask: np.ndarray) -> np.ndarray:
            return mask > 0  # any nucleus
    log(f"{name}: {len(split['train'])} train / {len(split['val'])} val / {len(split['test'])} test; "
        f"{args.minutes} min each")
    log("  bioseg training …")
    ours = run_bioseg(name, root, split, splits, work / name, args, truth)
    log(f"  bioseg: {ours['steps']} steps, {ours['epochs']} epochs (ended by {ours['ended_by']}), "
        f"Dice {ours['dice']:.4f}")
    log("  reference training …")
    ref = run_reference(root, reference_train, split["test"], truth, args.minutes, args, log)
    log(f"  reference: Dice {ref['dice']:.4f}")
    out: dict[str, Any] = {
        "dataset": folder,
        "split": {k: len(v) for k, v in split.items()},
        "test": split["test"],
        "foreground": "membrane (mask value 0)" if name == "isbi" else "nuclei (mask > 0)",
        "bioseg": ours,
        "reference": ref,
        "dice_difference": ours["dice"] - ref["dice"],
    }
    if name == "isbi":
        out["target"] = {
            "value": round(out["dice_difference"], 4),
            "target": f"bioseg membrane Dice - reference >= {TARGET_MARGIN}",
            "pass": bool(out["dice_difference"] >= TARGET_MARGIN),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="training budget per model (default 10)")
    p.add_argument("--datasets", nargs="+", choices=["isbi", "dsb"], default=["isbi", "dsb"])
    p.add_argument("--datasets-root", type=Path, default=DATASETS)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="bioseg config override (repeatable)")
    p.add_argument("--ref-batch", type=int, default=8)
    p.add_argument("--ref-patch", type=int, default=256)
    p.add_argument("--seed", type=int, default=0, help="reference seed")
    p.add_argument("--keep", type=Path, default=None, help="keep split files and run folders here")
    args = p.parse_args(argv)
    if args.quick:
        args.minutes = min(args.minutes, 0.5)
    C.setup_threads(args.threads)
    C.quiet_lightning()

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bioseg-bench-acc-") as tmp:
        work = args.keep or Path(tmp)
        for name in args.datasets:
            results[name] = run_dataset(name, args, work)

    rows = []
    for name, r in results.items():
        if "skipped" in r:
            rows.append([name, "skipped", "", "", "", "", ""])
            continue
        b, ref = r["bioseg"], r["reference"]
        verdict = ("pass" if r["target"]["pass"] else "FAIL") if "target" in r else ""
        rows.append([name, b["dice"], b["iou"], ref["dice"], ref["iou"], r["dice_difference"], verdict])
        rows.append([f"  steps ({name})", b["steps"], "", ref["steps"], "", "", ""])
    print()
    print(f"accuracy after {args.minutes} min of training each (foreground Dice/IoU pooled over test pixels)")
    print(C.table(rows, ["dataset", "bioseg Dice", "bioseg IoU", "ref Dice", "ref IoU", "difference", "≥+0.02"]))
    path = C.write_result(
        "accuracy",
        {
            "settings": {
                "minutes": args.minutes,
                "bioseg_overrides": list(args.set or []),
                "bioseg_epochs": f"{BUDGET_EPOCHS} (the time budget ends training)",
                "reference": {
                    "model": "monai.networks.nets.BasicUNet(out_channels=2)",
                    "loss": "monai DiceCELoss(softmax, to_onehot_y)",
                    "optimiser": "Adam lr 1e-3",
                    "batch": args.ref_batch,
                    "patch": args.ref_patch,
                    "precision": "bf16 autocast",
                    "augmentation": "random crops, flips, 90° rotations",
                },
            },
            "results": results,
        },
        args.out,
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
