"""unet against resunet on DSB 2018 nuclei, for the same wall-clock budget, compared with ``bioseg compare``.

Both start from the config ``bioseg init-config`` writes for the dataset, on one seeded split (20 % test,
15 % of the rest for validation), trained for ``--minutes`` each (``train.max_time_minutes``); the resunet
encoder starts from its random initialisation (no pretrained weights are downloaded) and is not frozen.
Both are scored on the same test images as foreground masks (a ``foreground`` head on the nuclei ids).
Results: ``benchmarks/results/unet_vs_resunet/`` (comparison.csv/.md, test_scores.png,
validation_curves.png) and ``benchmarks/results/unet_vs_resunet.json``.

    python benchmarks/bench_unet_vs_resunet.py [--minutes 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets" / "dsb2018_nuclei"
RESULTS = REPO / "benchmarks" / "results"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=5.0, help="training budget per model")
    p.add_argument("--keep", type=Path, default=None, help="keep split files and runs here")
    args = p.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent")
        return 0

    from bioseg import config as config_mod
    from bioseg.data.layouts import discover
    from bioseg.data.splits import make_splits
    from bioseg.workflows.compare import train_and_compare
    from bioseg.workflows.init_config import infer_config

    with tempfile.TemporaryDirectory(prefix="bioseg-unet-resunet-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        splits = make_splits(discover(DATA), folds=1, test_split=0.2, val_split=0.15, seed=0, out_dir=work / "splits")
        base = infer_config(DATA, name="dsb")
        # nuclei as one foreground class: the instance ids' foreground is the target
        base["data"].update(splits_dir=str(splits))
        base["heads"] = {"nuclei": {"type": "binary", "target": "foreground"}}
        base["post"] = {}
        base["train"] = {"max_time_minutes": args.minutes, "epochs": 1000, "early_stopping_patience": None}
        base["data"]["patch_size"] = [256, 256]
        base["infer"] = {"patch_size": [256, 256]}
        configs = []
        for name, model in (("unet", {"name": "unet"}), ("resunet", {"name": "resunet", "depth": 18})):
            cfg = {**base, "name": f"dsb-{name}", "output_dir": str(work / "runs"), "model": model}
            path = work / f"{name}.yaml"
            config_mod.dump(config_mod.from_dict(cfg), path)
            configs.append(path)
        start = time.monotonic()
        out = RESULTS / "unet_vs_resunet"
        if out.exists():
            shutil.rmtree(out)
        comparison = train_and_compare(configs, out, progress=False)
        summary = {
            "dataset": "dsb2018_nuclei",
            "split": "seed 0: 20 % test, 15 % of the rest validation",
            "budget_minutes_each": args.minutes,
            "wall_s": round(time.monotonic() - start, 1),
            "rows": comparison.rows,
        }
    (RESULTS / "unet_vs_resunet.json").write_text(json.dumps(summary, indent=2, default=str))
    print((out / "comparison.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
