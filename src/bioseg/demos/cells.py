"""``bioseg demo``: the whole job on built-in synthetic cells, in a few minutes on a laptop CPU."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from bioseg.errors import BiosegError

DEMO_IMAGES = 40
DEMO_OVERRIDES = [
    "train.epochs=12",
    "train.precision=bf16-mixed",
    "data.patch_size=[128,128]",
    "data.batch_size=8",
    "data.patches_per_epoch=192",
    "infer.patch_size=[256,256]",
    "optim.lr=0.003",
]


def run_demo(
    out_dir: str | Path, log: Callable[[str], None] = print, progress: bool = True
) -> dict[str, float]:
    """Generate data → check → split → init-config → train → predict → evaluate; returns the test scores."""
    from bioseg.data.layouts import discover
    from bioseg.data.splits import make_splits
    from bioseg.data.validate import check_dataset
    from bioseg.demos.cells2d import write_cells_dataset
    from bioseg.engine.trainer import train
    from bioseg.evaluation import evaluate_run
    from bioseg.init_config import infer_config, write_config

    out = Path(out_dir).resolve()
    data_dir = out / "data"
    if (out / "runs").exists():
        raise BiosegError(f"{out} already holds a demo run; remove it or pass -o NEW_FOLDER")
    start = time.monotonic()

    log(f"1/6 generating {DEMO_IMAGES} synthetic cell images in {data_dir}")
    write_cells_dataset(data_dir, DEMO_IMAGES, size=(256, 256), seed=0)

    log("2/6 checking the dataset")
    index = discover(data_dir)
    report = check_dataset(index, num_classes=2)
    if not report.ok:
        raise BiosegError("the generated demo data failed its own check: " + "; ".join(report.problems))

    log("3/6 splitting: 20% test, then train/validation")
    make_splits(index, folds=1, test_split=0.2, val_split=0.15, seed=0)

    config_path = out / "demo.yaml"
    cfg = infer_config(data_dir, name="demo")
    cfg["output_dir"] = str(out / "runs")
    write_config(cfg, config_path, header="bioseg demo experiment (inferred by init-config)")
    log(f"4/6 training (config: {config_path})")
    result = train(config_path, overrides=DEMO_OVERRIDES, progress=progress)

    log("5/6 predicting and 6/6 evaluating the test images")
    evaluation = evaluate_run(result.run_dir, split="test", progress=progress)
    scores = evaluation.scores
    log(
        "\n".join(
            [
                f"done in {time.monotonic() - start:.0f} s",
                f"  run folder:   {result.run_dir}",
                f"  charts:       {result.run_dir / 'charts'}",
                f"  predictions:  {evaluation.out_dir}",
                f"  test Dice {scores['dice_mean']:.3f}, IoU {scores['iou_mean']:.3f} "
                f"on {len(evaluation.per_image)} images (metrics: {evaluation.metrics_json})",
            ]
        )
    )
    return scores
