"""What privacy costs on DSB 2018 nuclei, at a fixed budget of optimiser steps.

1. Differential privacy (``train.privacy``, Opacus DP-SGD, delta 1e-5) at epsilon 1, 3 and 8 against
   the same training without privacy: test Dice (foreground) and instance F1 at IoU 0.5 (bioseg
   evaluate on the test split), and seconds per optimiser step. Same network, patch, batch, steps and
   seed; the private runs draw images by Poisson sampling (expected batch = the batch size) and have
   their noise computed so that the planned steps spend exactly the target epsilon.
2. Federated training (``bioseg federated``, FedAvg under Flower's simulation runtime) with the images
   split into 3 sites by modality (non-IID: fluorescence 256², fluorescence 360², colour 320×256), each
   site split on its own (test 20 %, validation 15 %), against pooled training (the union of the
   sites' training images) and each site alone: test Dice of every model on every site's test images.
   Every model takes the same number of optimiser steps per site: pooled and site-alone runs
   ``--steps``; in the federated run each site trains ``--steps / --rounds`` steps per round.

3. Site-level privacy in federated training (``--federated-dp``, run on its own and merged into the
   results): FedAvg (GroupNorm, weighted by images) against Flower's client-side clipping with the
   clipping norm C = the median norm of the sites' round-1 updates in that FedAvg run, without noise
   (clipping and the unweighted mean alone) and with the noise that spends epsilon 100 and 8 in the
   rounds (delta 1e-5; the unit of privacy is a site's whole contribution); test Dice on every site.

Runs are sequential, not interleaved (each is a whole training run): on a shared machine the times per
step carry its noise; the load average is recorded before and after. Writes
``benchmarks/results/privacy.json``.

    .venv/bin/python benchmarks/bench_privacy.py            # ~15 min on a busy 2-core machine (--steps 30)
    .venv/bin/python benchmarks/bench_privacy.py --quick    # a smoke test: 6 steps, 2 rounds
    .venv/bin/python benchmarks/bench_privacy.py --federated-dp   # part 3 only, ~6 min, added to the results
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table, write_result  # noqa: E402

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "dsb2018_nuclei"
EPSILONS = (1.0, 3.0, 8.0)
DELTA = 1e-5


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def experiment(root: Path, out: Path, name: str, steps_per_epoch: int, epochs: int, batch: int) -> dict[str, Any]:
    """A small UNet on 96² patches, one foreground head, objects by the foreground watershed."""
    return {
        "name": name, "output_dir": str(out), "seed": 0,
        "data": {"root": str(root), "labels": "instance", "channels": [0, 1, 2], "in_channels": 3,
                 "patch_size": [96, 96], "batch_size": batch, "patches_per_epoch": steps_per_epoch * batch},
        "model": {"widths": [8, 16, 32, 64]},
        "heads": {"foreground": {"type": "binary", "target": "foreground"}},
        "post": {"instances": {"mode": "foreground"}},
        "infer": {"patch_size": [256, 256], "precision": "fp32"},
        "train": {"epochs": epochs, "val_every": epochs, "snapshots": 0, "animation": False, "precision": "32"},
        "sched": {"warmup_epochs": 0.0},
    }  # fmt: skip


def link_dataset(names: list[str], out: Path) -> Path:
    for folder in ("images", "masks"):
        (out / folder).mkdir(parents=True, exist_ok=True)
        for n in names:
            (out / folder / n).symlink_to(DATASET / folder / n)
    return out


def sites_by_modality(work: Path, quick: bool) -> dict[str, Path]:
    """Three site folders of links, by image size and colour; each split on its own."""
    import imageio.v3 as iio

    from bioseg.data.layouts import discover
    from bioseg.data.splits import make_splits

    groups: dict[str, list[str]] = {}
    for path in sorted((DATASET / "images").iterdir()):
        im = iio.imread(path)
        rgb = im[..., :3].astype(np.int32) if im.ndim == 3 else None
        colour = rgb is not None and bool(np.any(rgb[..., 0] != rgb[..., 1]) or np.any(rgb[..., 1] != rgb[..., 2]))
        key = "colour" if colour else f"fluo{im.shape[0]}"
        groups.setdefault(key, []).append(path.name)
    sites = {}
    for key, names in sorted(groups.items()):
        if quick:
            names = names[:10]
        root = link_dataset(names, work / "sites" / key)
        make_splits(discover(root), folds=1, test_split=0.2, val_split=0.15, seed=0)
        sites[key] = root
    return sites


def pooled_dataset(sites: dict[str, Path], work: Path) -> Path:
    """All sites' images in one folder, with the union of their splits (same test images per site)."""
    from bioseg.data.splits import load_split

    names = [p.name for root in sites.values() for p in sorted((root / "images").iterdir())]
    root = link_dataset(names, work / "pooled")
    (root / "splits").mkdir()
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for site in sites.values():
        for part, members in load_split(site / "splits", 0).items():
            parts[part] += members
    (root / "splits" / "test.txt").write_text("\n".join(parts["test"]) + "\n")
    for part in ("train", "val"):
        (root / "splits" / f"fold_0_{part}.txt").write_text("\n".join(parts[part]) + "\n")
    return root


def train_run(cfg: dict[str, Any]) -> dict[str, Any]:
    from bioseg.engine.trainer import train

    start = time.monotonic()
    result = train(cfg, progress=False)
    wall = time.monotonic() - start
    rows = result.history
    # seconds per step from metrics.csv: the epochs before the last (which also validates)
    before = [r for r in rows if r["epoch"] < rows[-1]["epoch"]]
    per_step = before[-1]["time_s"] / before[-1]["step"] if before else rows[-1]["time_s"] / rows[-1]["step"]
    out = {"run_dir": str(result.run_dir), "steps": int(rows[-1]["step"]), "s_per_step": per_step, "wall_s": wall}
    privacy = result.run_dir / "privacy.json"
    if privacy.is_file():
        out["privacy"] = json.loads(privacy.read_text())
    return out


def test_scores(run_dir: Path) -> dict[str, float]:
    """bioseg evaluate on the test split: foreground Dice and instance F1 at IoU 0.5 (objects pooled)."""
    from bioseg.workflows.evaluate import evaluate_run

    result = evaluate_run(run_dir, split="test", progress=False)
    row = next(r for r in result.instances["table"] if abs(r["threshold"] - 0.5) < 1e-9)
    return {"dice": float(result.heads["foreground"]["dice_mean"]), "instance_f1_iou50": float(row["f1"])}


def site_dice(run_dir: Path, sites: dict[str, Path]) -> dict[str, float]:
    """Foreground Dice of a run's model on each site's test images (pixels pooled over the images)."""
    from bioseg.data.head_targets import instance_labels
    from bioseg.inference.predictor import Predictor
    from bioseg.workflows.split_predictions import predict_split, split_samples

    predictor = Predictor.from_run(run_dir)
    out = {}
    for name, root in sites.items():
        cfg = predictor.cfg.model_copy(deep=True)
        cfg.data.root, cfg.data.splits_dir = root, None
        inter = total = 0
        for item in predict_split(predictor, split_samples(cfg, "test"), progress=False):
            pred = item.prediction.labels["foreground"] > 0
            truth = instance_labels(np.asarray(item.mask), "instance") > 0
            inter += int((pred & truth).sum())
            total += int(pred.sum() + truth.sum())
        out[name] = 2 * inter / total if total else math.nan
    return out


def update_norms(run_dir: Path, sites: dict[str, Path]) -> dict[str, float]:
    """L2 norm of each site's round-1 update (its weights minus the initial global ones)."""
    from safetensors.torch import load_file

    start = load_file(str(run_dir / "updates" / "round_000" / "global.safetensors"))
    out = {}
    for name in sites:
        sent = load_file(str(run_dir / "updates" / "round_001" / f"{name}.safetensors"))
        floats = [k for k in start if start[k].is_floating_point()]
        out[name] = float(sum(((sent[k].double() - start[k].double()) ** 2).sum() for k in floats) ** 0.5)
    return out


def federated_dp(pooled: Path, sites: dict[str, Path], work: Path, rounds: int, local: int, batch: int) -> dict:
    """Part 3: FedAvg against site-level privacy (Flower's wrappers), the same rounds and local steps."""
    from opacus.accountants.utils import get_noise_multiplier

    from bioseg.workflows.federated import federated as run_federated
    from bioseg.workflows.federated_dp import SiteDP

    runs: dict[str, Any] = {}
    info = machine()  # the load average before these runs

    def one(label: str, dp: SiteDP | None) -> Path:
        cfg = experiment(pooled, work / "runs", label.replace(" ", "_").replace("=", ""), local, 1, batch)
        cfg["model"]["norm"] = "group"  # as privacy needs: the same network for every run
        log(f"federated {label}: {rounds} rounds x {local} local steps per site")
        start = time.monotonic()
        result = run_federated(cfg, sites, rounds=rounds, local_epochs=1, keep_updates=dp is None, dp=dp)
        about = json.loads((result.run_dir / "federated.json").read_text())
        runs[label] = {"run_dir": str(result.run_dir), "wall_s": time.monotonic() - start,
                       "weighting": about["weighting"], "privacy": about["privacy"],
                       "site_dice": site_dice(result.run_dir, sites)}  # fmt: skip
        log(f"  {runs[label]['site_dice']}")
        return result.run_dir

    norms = update_norms(one("fedavg", None), sites)
    clip = float(np.median(list(norms.values())))
    one("clipped, no noise", SiteDP(0.0, clip, DELTA))
    for eps in (100.0, 8.0):
        z = get_noise_multiplier(target_epsilon=eps, target_delta=DELTA, sample_rate=1.0, steps=rounds)
        one(f"dp eps={eps:g}", SiteDP(float(z), clip, DELTA))
    names = list(sites)
    rows = [[label, f"{r['privacy']['epsilon']:.1f}" if r["privacy"] and r["privacy"]["epsilon"] else "∞",
             f"{r['privacy']['noise_multiplier']:.3f}" if r["privacy"] else "-",
             *[f"{r['site_dice'][n]:.3f}" for n in names]] for label, r in runs.items()]  # fmt: skip
    print(table(rows, ["federated", "epsilon", "noise", *[f"Dice on {n} test" for n in names]]))
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": info, "rounds": rounds,
            "local_steps_per_round": local, "clipping_norm": clip, "round1_update_norms": norms, "delta": DELTA,
            "runs": runs, "load_average_at_end": list(os.getloadavg())}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="optimiser steps per model (per site)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="federated rounds")
    parser.add_argument("--quick", action="store_true", help="a smoke test: 6 steps, 2 rounds, 10 images per site")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_privacy"))
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here instead of benchmarks/results")
    parser.add_argument("--federated-dp", action="store_true",
                        help="only part 3 (site-level privacy, federated), added to the existing results")  # fmt: skip
    args = parser.parse_args()
    if not DATASET.is_dir():
        sys.exit(f"{DATASET} is absent: this benchmark needs the DSB 2018 subset beside the repository")
    steps, rounds = (6, 2) if args.quick else (args.steps, args.rounds)
    if args.work.exists():
        sys.exit(f"{args.work} exists; remove it or pass --work")
    import torch

    torch.manual_seed(0)
    info = machine()
    log(f"machine: {info['cpu']}, load {info['load_average_at_start']}")
    work = args.work
    sites = sites_by_modality(work, args.quick)
    pooled = pooled_dataset(sites, work)
    from bioseg.data.splits import load_split

    n_train = len(load_split(pooled / "splits", 0)["train"])
    per_epoch = math.ceil(n_train / args.batch)  # the private runs' steps per epoch: 1 / sample rate
    epochs = max(1, math.ceil(steps / per_epoch))
    steps = epochs * per_epoch  # the budget, in whole epochs of the pooled data
    runs: dict[str, Any] = {}
    if args.federated_dp:  # part 3 alone, added to the results of parts 1 and 2
        path = (args.out or Path(__file__).resolve().parent / "results") / "privacy.json"
        before = json.loads(path.read_text()) if path.is_file() else {}
        before.pop("benchmark", None)  # the top-level date stays that of parts 1 and 2
        before["federated_dp"] = federated_dp(pooled, sites, work, rounds, max(1, steps // rounds), args.batch)
        date = before.pop("date", None)
        path = write_result("privacy", json.loads(json.dumps(before, default=str)), args.out)
        if date:
            path.write_text(json.dumps({**json.loads(path.read_text()), "date": date}, indent=2) + "\n")
        log(f"wrote {path}")
        return

    # --- 1. differential privacy -------------------------------------------------------------------
    for label, eps in [("non-private", None), *[(f"dp eps={e:g}", e) for e in EPSILONS]]:
        cfg = experiment(pooled, work / "runs", label.replace(" ", "_").replace("=", ""), per_epoch, epochs, args.batch)
        if eps is not None:
            cfg["train"]["privacy"] = {"target_epsilon": eps, "delta": DELTA, "max_grad_norm": 1.0}
        log(f"training {label}: {epochs} epochs x {per_epoch} steps")
        runs[label] = train_run(cfg)
        runs[label]["test"] = test_scores(Path(runs[label]["run_dir"]))
        log(f"  {runs[label]['test']}, {runs[label]['s_per_step']:.3f} s/step")

    # --- 2. federated --------------------------------------------------------------------------------
    federated: dict[str, Any] = {"pooled": {**runs["non-private"]}}
    federated["pooled"]["site_dice"] = site_dice(Path(runs["non-private"]["run_dir"]), sites)
    site_train = {name: len(load_split(root / "splits", 0)["train"]) for name, root in sites.items()}
    for name, root in sites.items():
        per_site_epoch = math.ceil(site_train[name] / args.batch)
        site_epochs = math.ceil(steps / per_site_epoch)
        cfg = experiment(root, work / "runs", f"alone_{name}", per_site_epoch, site_epochs, args.batch)
        log(f"training {name} alone")
        federated[f"alone {name}"] = train_run(cfg)
        federated[f"alone {name}"]["site_dice"] = site_dice(Path(federated[f"alone {name}"]["run_dir"]), sites)
        log(f"  {federated[f'alone {name}']['site_dice']}")
    from bioseg.workflows.federated import federated as run_federated

    local = max(1, steps // rounds)
    cfg = experiment(pooled, work / "runs", "federated", local, 1, args.batch)
    log(f"federated: {rounds} rounds x {local} local steps per site")
    start = time.monotonic()
    result = run_federated(cfg, sites, rounds=rounds, local_epochs=1)
    federated["federated fedavg"] = {"run_dir": str(result.run_dir), "wall_s": time.monotonic() - start,
                                     "rounds": rounds, "local_steps_per_round": local,
                                     "site_dice": site_dice(result.run_dir, sites)}  # fmt: skip
    log(f"  {federated['federated fedavg']['site_dice']}")

    # --- report ------------------------------------------------------------------------------------------
    base = runs["non-private"]
    rows = [[label, f"{r['privacy']['epsilon']:.2f}" if "privacy" in r else "∞",
             f"{r['privacy']['noise_multiplier']:.2f}" if "privacy" in r else "0",
             f"{r['test']['dice']:.3f}", f"{r['test']['instance_f1_iou50']:.3f}", f"{r['s_per_step']:.3f}",
             f"{r['s_per_step'] / base['s_per_step']:.2f}"] for label, r in runs.items()]  # fmt: skip
    print(table(rows, ["training", "epsilon", "noise", "test Dice", "F1@0.5", "s/step", "× time"]))
    names = list(sites)
    frows = [[label, *[f"{r['site_dice'][n]:.3f}" for n in names]] for label, r in federated.items()]
    print(table(frows, ["model", *[f"Dice on {n} test" for n in names]]))
    payload = {
        "machine": info,
        "load_average_at_end": list(os.getloadavg()),
        "settings": {"steps": steps, "batch": args.batch, "patch": [96, 96], "widths": [8, 16, 32, 64],
                     "delta": DELTA, "max_grad_norm": 1.0, "rounds": rounds, "quick": args.quick,
                     "train_images_pooled": n_train, "site_train_images": site_train,
                     "site_images": {n: len(list((r / "images").iterdir())) for n, r in sites.items()}},  # fmt: skip
        "privacy": runs,
        "federated": federated,
    }
    path = write_result("privacy", json.loads(json.dumps(payload, default=str)), args.out)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
