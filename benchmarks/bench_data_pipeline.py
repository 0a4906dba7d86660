"""Benchmark 2: data pipeline — training throughput with augmentation against the same run without it.

One bioseg training run (``SegmentationModule`` + ``SegmentationDataModule`` + ``build_trainer``, in-memory
synthetic cells, 2D patches of 256² in batches of 8, ``data.num_workers`` 0) whose augmentation is switched
step by step in a cycle: off, the config's default list, and the full list at p = 1 (every sample flipped,
turned, rotated, deformed, noised and re-contrasted: the worst case). Consecutive steps therefore differ
only in their augmentation, and a slow moment of a shared machine hits all modes alike.

A step is the time from the end of one training step to the end of the next: fetching the patches
(numpy crops, collate), transfer, augmentation (``on_after_batch_transfer``, on the training device),
forward, loss, backward and optimiser. The ratio for a mode is the median over cycles of
time(off) / time(mode) = throughput(mode) / throughput(off). Target: >= 0.85.

    python benchmarks/bench_data_pipeline.py [--quick] [--precisions 32 bf16-mixed] [--cycles 4]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as C
import torch
from bench_training_overhead import datamodule_in_memory, make_dataset

TARGET = 0.85

FULL = [
    {"name": "flip", "p": 1.0},
    {"name": "rot90", "p": 1.0},
    {"name": "rotate", "p": 1.0},
    {"name": "elastic", "p": 1.0},
    {"name": "gaussian_noise", "p": 1.0},
    {"name": "brightness_contrast", "p": 1.0},
    {"name": "gamma", "p": 1.0},
]


class TimedAugmentation:
    """Wraps an ``Augmentation`` and records the seconds of each call."""

    def __init__(self, augmentation: Any) -> None:
        self.augmentation = augmentation
        self.seconds: list[float] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = self.augmentation(*args, **kwargs)
        self.seconds.append(time.perf_counter() - start)
        return out


def toggler(modes: dict[str, TimedAugmentation | None]):
    import lightning as L

    names = list(modes)

    class Toggle(L.Callback):
        """Sets the next step's augmentation at the end of each step and times every step."""

        def __init__(self) -> None:
            self.steps: list[dict[str, Any]] = []
            self.step = 0
            self._end: float | None = None
            self._start = 0.0

        def on_train_start(self, trainer, pl_module) -> None:
            pl_module.augment = modes[names[0]]

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self._start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            now = time.perf_counter()
            mode = names[self.step % len(names)]
            if self._end is not None:
                self.steps.append(
                    {"mode": mode, "step_s": now - self._end, "before_step_s": self._start - self._end}
                )
            self.step += 1
            pl_module.augment = modes[names[self.step % len(names)]]
            self._end = time.perf_counter()

    return Toggle()


def run_precision(args: Any, precision: str, data: Path) -> dict[str, Any]:
    import lightning as L

    from bioseg import config as config_mod
    from bioseg.data.augment import build_augmentation
    from bioseg.engine.module import SegmentationModule
    from bioseg.engine.trainer import build_trainer

    n_modes = 3
    steps = 1 + n_modes * (args.cycles + 1)  # one step to start timing, one cycle of warm-up
    with tempfile.TemporaryDirectory(prefix="bioseg-bench-") as tmp:
        cfg = config_mod.from_dict(
            {
                "name": "bench",
                "output_dir": tmp,
                "data": {
                    "root": str(data),
                    "patch_size": [args.patch, args.patch],
                    "batch_size": args.batch,
                    "patches_per_epoch": args.batch * steps,
                },
                "train": {"epochs": 1, "precision": precision},
            }
        )
        default_steps = [s.model_dump() for s in cfg.augment]
        modes = {
            "off": None,
            "default": TimedAugmentation(build_augmentation(cfg.augment, 2)),
            "full": TimedAugmentation(build_augmentation(FULL, 2)),
        }
        L.seed_everything(cfg.seed, verbose=False)
        module = SegmentationModule(config_mod.to_dict(cfg))
        datamodule = datamodule_in_memory(cfg)
        trainer, _, _ = build_trainer(cfg, cfg.run_dir, has_val=False, progress=False)
        timer = toggler(modes)
        trainer.callbacks.append(timer)
        trainer.fit(module, datamodule=datamodule)

    # the first recorded step is the 2nd of the run; drop the warm-up cycle (the first n_modes records,
    # shifted so that every cycle starts with "off")
    records = timer.steps[n_modes - 1 :]
    cycles = [records[i : i + n_modes] for i in range(0, len(records) - n_modes + 1, n_modes)]
    cycles = [c for c in cycles if [r["mode"] for r in c] == list(modes)]
    out: dict[str, Any] = {"precision": precision, "cycles": len(cycles), "modes": {}}
    for k, name in enumerate(modes):
        step_s = [c[k]["step_s"] for c in cycles]
        before = [c[k]["before_step_s"] for c in cycles]
        augment = modes[name].seconds[1:] if modes[name] is not None else []
        entry = {
            "step_s": step_s,
            "images_per_s": args.batch / C.median(step_s),
            "before_step_s": C.median(before),
            "augment_s": C.median(augment) if augment else 0.0,
        }
        if name != "off":
            off_s = [c[0]["step_s"] for c in cycles]
            ratios = C.paired_ratios(off_s, step_s)
            # robust to other processes: the off step plus this mode's extra time before the step
            extra = entry["before_step_s"] - out["modes"]["off"]["before_step_s"]
            entry.update(
                {
                    "ratio": C.median(ratios),
                    "ratio_spread": C.spread(ratios),
                    "ratio_of_fastest_steps": min(off_s) / min(step_s),
                    "ratio_from_added_time": C.median(off_s) / (C.median(off_s) + max(0.0, extra)),
                }
            )
            entry.update(C.target(entry["ratio"], TARGET))
        out["modes"][name] = entry
    out["default_list"] = default_steps
    return out


def main(argv: list[str] | None = None) -> int:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--precisions", nargs="+", default=["32", "bf16-mixed"])
    p.add_argument("--patch", type=int, default=None, help="patch side (default 256; --quick 128)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--cycles", type=int, default=None, help="measured cycles of (off, default, full); default 6")
    args = p.parse_args(argv)
    args.patch = args.patch or (128 if args.quick else 256)
    args.cycles = args.cycles or (3 if args.quick else 6)
    C.setup_threads(args.threads)
    C.quiet_lightning()

    print(f"data pipeline: patch {args.patch}², batch {args.batch}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory(prefix="bioseg-bench-data-") as tmp:
        data = make_dataset(Path(tmp), 6, 2 * args.patch)
        results = [run_precision(args, prec, data) for prec in args.precisions]

    rows = []
    for r in results:
        for name, m in r["modes"].items():
            rows.append(
                [
                    r["precision"],
                    name,
                    m["images_per_s"],
                    1000 * m["augment_s"],
                    1000 * m["before_step_s"],
                    m.get("ratio", 1.0),
                    f"{m['ratio_spread'][0]:.3f}-{m['ratio_spread'][1]:.3f}" if "ratio_spread" in m else "",
                    m.get("ratio_of_fastest_steps", 1.0),
                    m.get("ratio_from_added_time", 1.0),
                    ("pass" if m["pass"] else "FAIL") if "pass" in m else "",
                ]
            )
    print()
    headers = ["precision", "augment", "img/s", "aug ms", "wait ms", "ratio", "range", "fastest", "added", "≥0.85"]
    print(C.table(rows, headers))
    print(
        "\nratio: median over cycles of step time (off) / step time (mode) = relative throughput\n"
        "wait ms: from the end of a step to the start of the next (fetch, collate, transfer, augmentation)\n"
        "fastest: ratio of the fastest steps; added: off step / (off step + extra wait) — both less\n"
        "sensitive to other processes on the machine than the median ratio"
    )
    path = C.write_result(
        "data_pipeline",
        {
            "settings": {
                "patch": [args.patch, args.patch],
                "batch": args.batch,
                "num_workers": 0,
                "cycles": args.cycles,
                "modes": {"off": [], "default": results[0]["default_list"], "full": FULL},
                "interleaving": "per step, cycling off / default / full",
            },
            "results": {r["precision"]: {"cycles": r["cycles"], **r["modes"]} for r in results},
        },
        args.out,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
