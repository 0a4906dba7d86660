"""Benchmark 6: the multi-task demo at its full budget, against its target.

Runs ``bioseg.demos.multitask.run_demo_multitask`` (synthetic wings → check → train four heads on
``hoppernet_lite`` with head freezing → evaluate the test images) in a temporary folder and reads its
``metrics.csv``. The bar: on the validation images each head reaches Dice >= 0.85 (veins: clDice >= 0.8)
within 10 minutes on 2 cores, with head freezing engaging (at least one head frozen at some epoch).

Reported: per head the best validation Dice over the epochs (and its epoch and the training time when
it first met the bar), the validation Dice at the epoch whose weights were kept, the test Dice; the veins'
clDice (validation best and kept, test); every freeze / unfreeze from the ``frozen/<head>`` columns;
wall time of the whole demo and of its training, the process's CPU time (user + system: what the run
cost, whatever else the machine was doing) and the load average before and after.

    python benchmarks/bench_multitask.py [--minutes M] [--quick] [--keep DIR] [--out DIR]

``--minutes`` caps the training time (``train.max_time_minutes``; default: the demo's own guard);
``--quick`` is a smoke test with a tiny budget (its JSON says so: compare only full runs).
"""

from __future__ import annotations

import math
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as C

BAR_MINUTES = 10.0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def first_reach(history: list[dict[str, float]], key: str, bar: float) -> dict[str, Any] | None:
    """The first epoch where ``key`` reached ``bar``, with the training time then; None if never."""
    for row in history:
        value = row.get(key, math.nan)
        if not math.isnan(value) and value >= bar:
            return {"epoch": int(row["epoch"]), "time_s": row.get("time_s")}
    return None


def spans(epochs: list[int]) -> list[list[int]]:
    """``[4, 5, 6, 9]`` → ``[[4, 6], [9, 9]]``: runs of consecutive epochs, first and last."""
    out: list[list[int]] = []
    for e in epochs:
        if out and e == out[-1][1] + 1:
            out[-1][1] = e
        else:
            out.append([e, e])
    return out


def summarise(run_dir: Path, scores: dict[str, float], wall_s: float) -> dict[str, Any]:
    from bioseg.demos.multitask import BARS, DEMO_MT_HEADS, best_values, freezing_events
    from bioseg.reports.history import read_metrics_csv

    history = read_metrics_csv(run_dir / "metrics.csv")
    heads = list(DEMO_MT_HEADS)
    kept_epoch = best_values(history, "val/dice_mean")[1]
    kept = next((r for r in history if kept_epoch is not None and int(r["epoch"]) == kept_epoch), {})
    per_head: dict[str, Any] = {}
    for head in heads:
        best, epoch = best_values(history, f"val/{head}/dice_mean")
        per_head[head] = {
            "val_dice_best": best,
            "val_dice_best_epoch": epoch,
            "val_dice_kept": kept.get(f"val/{head}/dice_mean"),
            "test_dice": scores[f"dice_{head}"],
            "bar_reached": first_reach(history, f"val/{head}/dice_mean", BARS[head]) if head in BARS else None,
        }
    cl_best, cl_epoch = best_values(history, "val/veins/cldice")
    per_head["veins"] |= {
        "val_cldice_best": cl_best,
        "val_cldice_best_epoch": cl_epoch,
        "val_cldice_kept": kept.get("val/veins/cldice"),
        "test_cldice": scores["cldice_veins"],
        "cldice_bar_reached": first_reach(history, "val/veins/cldice", BARS["veins_cldice"]),
    }
    # every bar met at one and the same epoch (the demo keeps one set of weights)
    together = next(
        (
            {"epoch": int(r["epoch"]), "time_s": r.get("time_s")}
            for r in history
            if all(r.get(f"val/{h}/dice_mean", 0.0) >= BARS[h] for h in heads if h in BARS)
            and r.get("val/veins/cldice", 0.0) >= BARS["veins_cldice"]
        ),
        None,
    )
    events = freezing_events(history, heads)
    target = {f"val_dice_{h}": C.target(per_head[h]["val_dice_best"], BARS[h]) for h in heads if h in BARS}
    target["val_cldice_veins"] = C.target(cl_best, BARS["veins_cldice"])
    target["wall_minutes"] = {
        "value": round(wall_s / 60, 2),
        "target": f"<= {BAR_MINUTES}",
        "pass": wall_s / 60 <= BAR_MINUTES,
    }
    target["head_freezing_engaged"] = {
        "value": sum(e["frozen"] for e in events),
        "target": ">= 1 freeze",
        "pass": any(e["frozen"] for e in events),
    }
    return {
        "epochs_run": len(history),
        "kept_epoch": kept_epoch,
        "heads": per_head,
        "all_bars_at_one_epoch": together,
        "freezing_events": events,
        "frozen_spans": {h: spans([int(r["epoch"]) for r in history if r.get(f"frozen/{h}") == 1.0]) for h in heads},
        "history": [
            {
                "epoch": int(r["epoch"]),
                "time_s": r.get("time_s"),
                **{h: r.get(f"val/{h}/dice_mean") for h in heads},
                "veins_cldice": r.get("val/veins/cldice"),
                "frozen": [h for h in heads if r.get(f"frozen/{h}") == 1.0],
            }
            for r in history
        ],
        "target": target,
        "pass": all(t["pass"] for t in target.values()),
    }


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=None, help="training time cap (default: the demo's)")
    p.add_argument("--keep", type=Path, default=None, help="keep the demo folder here (default: a temp folder)")
    args = p.parse_args()
    C.setup_threads(args.threads)
    C.quiet_lightning()
    from bioseg.demos.multitask import (
        DEMO_MT_EPOCHS,
        DEMO_MT_IMAGES,
        DEMO_MT_RESIZE,
        DEMO_MT_SIZE,
        DEMO_MT_TRAIN,
        run_demo_multitask,
    )

    budget: dict[str, Any] = {
        "images": DEMO_MT_IMAGES,
        "epochs": DEMO_MT_EPOCHS,
        "size": DEMO_MT_SIZE,
        "resize": DEMO_MT_RESIZE,
    }
    overrides = []
    if args.quick:
        budget = {"images": 8, "epochs": 2, "size": (56, 64), "resize": 64}
        overrides += ["data.patches_per_epoch=4", "train.snapshots=1"]
    minutes = args.minutes if args.minutes is not None else DEMO_MT_TRAIN["max_time_minutes"]
    overrides.append(f"train.max_time_minutes={minutes}")

    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench_multitask_"))
    if args.keep and (folder / "runs").exists():
        shutil.rmtree(folder)
    load_before = list(os.getloadavg())
    cpu_start, start = cpu_seconds(), time.monotonic()
    try:
        scores = run_demo_multitask(folder, progress=False, overrides=overrides, **budget)
        wall_s = time.monotonic() - start
        cpu_s = cpu_seconds() - cpu_start
        result = summarise(folder / "runs" / "demo_multitask" / "fold_0", scores, wall_s)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)

    heads = list(result["heads"])
    rows = [
        [
            h,
            result["heads"][h]["val_dice_best"],
            result["heads"][h]["val_dice_best_epoch"],
            result["heads"][h]["val_dice_kept"],
            result["heads"][h]["test_dice"],
            (result["heads"][h]["bar_reached"] or {}).get("epoch", "-"),
        ]
        for h in heads
    ]
    v = result["heads"]["veins"]
    rows.append(
        [
            "veins clDice",
            v["val_cldice_best"],
            v["val_cldice_best_epoch"],
            v["val_cldice_kept"],
            v["test_cldice"],
            (v["cldice_bar_reached"] or {}).get("epoch", "-"),
        ]
    )
    print(C.table(rows, ["head", "val best", "epoch", "val kept", "test", "bar at epoch"]))
    said = ", ".join(
        f"{e['head']} {'froze' if e['frozen'] else 'unfroze'} at {e['epoch']}" for e in result["freezing_events"]
    )
    print(f"head freezing: {said or 'none'}")
    print(
        f"wall {wall_s:.0f} s (training {scores['train_s']:.0f} s), CPU {cpu_s:.0f} s, "
        f"load average {load_before[0]:.1f} → {os.getloadavg()[0]:.1f}"
    )
    for name, t in result["target"].items():
        print(f"  {name}: {t['value']} (target {t['target']}) {'PASS' if t['pass'] else 'FAIL'}")

    payload = {
        "quick": args.quick,
        "settings": {**budget, "overrides": overrides, "bars": _bars()},
        "wall_s": round(wall_s, 1),
        "train_s": round(scores["train_s"], 1),
        "cpu_s": round(cpu_s, 1),
        "threads": int(scores["threads"]),
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
        **result,
    }
    path = C.write_result("multitask", payload, args.out)
    print(f"wrote {path}")


def _bars() -> dict[str, float]:
    from bioseg.demos.multitask import BARS

    return dict(BARS)


if __name__ == "__main__":
    main()
