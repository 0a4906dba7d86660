"""Benchmark: does ``init-config --minutes M`` size a training that ends within M ± 5 minutes?

For each dataset in ../shared/datasets, as a user would: ``bioseg init-config DATA --minutes M`` (a step is
timed on this machine, batch, patch and epochs are chosen for the budget, and ``train.max_time_minutes``
ends the training), then ``bioseg train`` on the config it wrote, timed from the command's start to its
end (start-up, data loading, the end-of-training model files and report included). The shared datasets
are read-only, so init-config writes each split beside its config. The ovule folder holds two volumes of
different kinds, too few for the default split: it gets a split of one training volume (the nuclei) and
one validation volume. ``--parallel`` runs the datasets at the same time (each on ``--threads``), as a
busy machine would; the target holds on a busy machine too, since the clock ends the training.

    python benchmarks/bench_training_budget.py [--minutes 30] [--threads 1] [--parallel] [--work DIR]
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as C

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
#: dataset folder → extra init-config options, and the split it needs (train, val) when the default does not fit
SETUPS: dict[str, dict[str, Any]] = {
    "dsb2018_nuclei": {},
    "isbi2012_em": {},
    "plantseg_ovules_3d": {
        "options": ["--voxel-size", "0.284,0.127,0.127"],
        "split": (["1135_mini"], ["sample_ovule"]),
    },
}
TOLERANCE_MINUTES = 5.0


def bioseg() -> str:
    return str(Path(sys.executable).with_name("bioseg"))


def start(name: str, minutes: float, work: Path, threads: int) -> tuple[subprocess.Popen, dict[str, Any]]:
    """init-config (waited for), then ``bioseg train`` started; returns the training process and what is known."""
    setup = SETUPS[name]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    config = work / f"{name}.yaml"
    made = subprocess.run([bioseg(), "init-config", str(DATASETS / name), "-o", str(config), "--minutes", str(minutes),
                           "--force", *setup.get("options", [])], env=env, capture_output=True, text=True)  # fmt: skip
    if made.returncode:
        raise SystemExit(f"init-config {name} failed: {made.stdout}{made.stderr}")
    plan = next((line for line in made.stdout.splitlines() if line.startswith("sized for")), "")
    overrides = []
    if "split" in setup:
        splits = work / f"{name}_splits"
        splits.mkdir(parents=True, exist_ok=True)
        train, val = setup["split"]
        (splits / "fold_0_train.txt").write_text("\n".join(train) + "\n")
        (splits / "fold_0_val.txt").write_text("\n".join(val) + "\n")
        (splits / "test.txt").write_text("")
        overrides = ["--set", f"data.splits_dir={splits}"]
    log = (work / f"{name}.train.log").open("w")
    process = subprocess.Popen([bioseg(), "train", str(config), "--no-progress", *overrides], cwd=work, env=env,
                               stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    return process, {"plan": plan, "started": time.monotonic(), "load_at_start": list(os.getloadavg())}


def finish(name: str, process: subprocess.Popen, info: dict[str, Any], minutes: float, work: Path) -> dict[str, Any]:
    code = process.wait()
    seconds = time.monotonic() - info.pop("started")
    rows = list(csv.DictReader((work / "runs" / name / "fold_0" / "metrics.csv").open())) if code == 0 else []
    within = abs(seconds / 60 - minutes) <= TOLERANCE_MINUTES
    return {**info, "exit_code": code, "train_wall_s": round(seconds, 1), "train_wall_min": round(seconds / 60, 2),
            "epochs_done": len(rows), "load_at_end": list(os.getloadavg()),
            "target": {"value_min": round(seconds / 60, 2), "wanted": f"{minutes:g} ± {TOLERANCE_MINUTES:g} min",
                       "met": bool(code == 0 and within)}}  # fmt: skip


def main() -> int:
    parser = C.parser(__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--datasets", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--parallel", action="store_true", help="train the datasets at the same time")
    parser.add_argument("--work", type=Path, default=None, help="folder for configs, splits and runs")
    args = parser.parse_args()
    if not DATASETS.is_dir():
        print(f"skipped: {DATASETS} is absent (the real datasets this benchmark needs)")
        return 0
    threads = args.threads or 1
    work = args.work or Path(f"/tmp/bioseg-budget-{os.getpid()}")
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    if args.parallel:
        started = {name: start(name, args.minutes, work, threads) for name in args.datasets}
        results = {name: finish(name, *started[name], args.minutes, work) for name in args.datasets}
    else:
        for name in args.datasets:
            results[name] = finish(name, *start(name, args.minutes, work, threads), args.minutes, work)
    for name, r in results.items():
        verdict = "met" if r["target"]["met"] else "NOT met"
        print(f"{name}: {r['train_wall_min']:.1f} min, {r['epochs_done']} epochs, exit {r['exit_code']}; "
              f"target {r['target']['wanted']}: {verdict} — {r['plan']}")  # fmt: skip
    C.write_result("training_budget", {"machine": C.machine(), "minutes": args.minutes, "torch_threads": threads,
                                       "parallel": args.parallel, "datasets": results}, args.out)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
