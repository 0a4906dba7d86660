"""``bioseg demo --3d``: 3D instance segmentation end to end on procedural membrane-stained volumes.

Synthetic tissue (cells packed in 3D, their walls stained, anisotropic voxels) → check → split →
init-config (a foreground head and a boundary head with a U-Net weight map) → train → evaluate with
objects (boundary watershed + agglomeration) → F1 at IoU 0.5 and the F1-vs-IoU chart, in a few minutes
on a laptop CPU.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bioseg.errors import BiosegError

DEMO3D_VOLUMES = 10
DEMO3D_SHAPE = (32, 128, 128)  # (Z, Y, X), z voxels twice as deep as wide: 20-40 cells a volume
DEMO3D_EPOCHS = 60  # quiet 2 cores: 2.4 min, test F1@0.5 about 0.8 (24 epochs: 1 min, 0.73-0.79)
DEMO3D_OVERRIDES = [
    "train.precision=bf16-mixed",
    "train.max_time_minutes=3.5",  # a guard on a busy machine: the epochs normally end well before
    "train.snapshots=1",
    "train.animation=false",  # the per-epoch frame predicts the validation volume a second time
    "train.save_top_k=0",  # keep the final (annealed) weights: one validation volume is too few to pick by
    "model.widths=[8,16,32,64]",
    "model.pool_sizes=[[1,2,2],[2,2,2],[2,2,2]]",  # z voxels are coarse: keep them at the first level
    "data.patch_size=[16,64,64]",
    "data.batch_size=2",  # more, smaller steps learn faster than fewer large ones for the same voxels
    "data.patches_per_epoch=48",
    "infer.patch_size=[32,128,128]",  # a test volume in one tile
    "infer.precision=bf16",
    "optim.lr=0.006",
    "augment=[]",  # measured: in a budget of minutes, F1 is higher without augmentation (3 seeds)
    "heads.boundaries.weight=2.0",  # objects come from the boundaries: they get twice the foreground's weight
    "post.instances.mode=boundary",
    "post.instances.threshold=0.3",  # boundaries are blurred in z: a lower cut closes more walls
    "post.instances.sigma_seeds=2.0",
    "post.instances.h=2.0",
    "post.instances.merge_threshold=0.3",
    "post.instances.min_size=200",
]


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[int]:
    """Torch's intra-op threads for the block, restored after. ``None``: one thread when the machine is
    already busy (load average ≥ cores), where threads that wait for each other lose more than they gain."""
    import torch

    before = torch.get_num_threads()
    if threads is None:
        busy = hasattr(os, "getloadavg") and os.getloadavg()[0] >= (os.cpu_count() or 1)
        threads = 1 if busy else before
    torch.set_num_threads(max(1, int(threads)))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def run_demo_3d(
    out_dir: str | Path,
    log: Callable[[str], None] = print,
    progress: bool = True,
    *,
    volumes: int = DEMO3D_VOLUMES,
    epochs: int = DEMO3D_EPOCHS,
    shape: Sequence[int] = DEMO3D_SHAPE,
    overrides: Sequence[str] = (),
    threads: int | None = None,
) -> dict[str, float]:
    """Generate volumes → check → split → init-config → train → evaluate with instances.

    ``volumes``, ``epochs`` and ``shape`` (Z, Y, X) set the budget; ``overrides`` (``key=value``) are
    applied after :data:`DEMO3D_OVERRIDES`; ``threads``: torch threads for training and evaluation (None:
    one on a busy machine, else torch's default). Returns the test scores: ``f1_iou50`` (F1 of objects
    matched at IoU 0.5), ``average_precision``, ``dice_foreground`` (the foreground head's voxel Dice),
    ``n_true``, ``n_pred`` and ``train_s`` (seconds of training).
    """
    from bioseg.data.layouts import discover
    from bioseg.data.splits import make_splits
    from bioseg.data.validate import check_dataset
    from bioseg.demos.cells3d import write_cells_3d_dataset
    from bioseg.engine.trainer import train
    from bioseg.evaluation import evaluate_run
    from bioseg.init_config import infer_config, write_config

    if int(volumes) != volumes or volumes < 3:
        raise BiosegError(f"volumes={volumes!r}: the demo needs at least 3 (train, validation and test)")
    out = Path(out_dir).resolve()
    data_dir = out / "data"
    if (out / "runs").exists():
        raise BiosegError(f"{out} already holds a demo run; remove it or pass -o NEW_FOLDER")
    start = time.monotonic()
    shape = tuple(int(s) for s in shape)

    size = "×".join(str(s) for s in shape)
    log(f"1/6 generating {volumes} synthetic 3D volumes of {size} voxels (membrane stain) in {data_dir}")
    write_cells_3d_dataset(data_dir, int(volumes), shape=shape, seed=0, kind="membrane")

    log("2/6 checking the dataset")
    index = discover(data_dir)
    report = check_dataset(index, spatial_dims=3)
    if not report.ok:
        raise BiosegError("the generated demo data failed its own check: " + "; ".join(report.problems))

    log("3/6 splitting: 20% test, then train/validation")
    make_splits(index, folds=1, test_split=0.2, val_split=0.15, seed=0)

    config_path = out / "demo3d.yaml"
    cfg = infer_config(data_dir, name="demo3d")
    cfg["output_dir"] = str(out / "runs")
    write_config(cfg, config_path, header="bioseg 3D demo experiment (inferred by init-config)")
    all_overrides = [*DEMO3D_OVERRIDES, f"train.epochs={int(epochs)}", *overrides]
    with _torch_threads(threads) as n_threads:
        log(f"4/6 training a foreground head and a boundary head on {n_threads} thread(s) (config: {config_path})")
        train_start = time.monotonic()
        result = train(config_path, overrides=all_overrides, progress=progress)
        train_s = time.monotonic() - train_start
        log("5/6 predicting and 6/6 evaluating the test volumes: boundaries → watershed → agglomeration")
        evaluation = evaluate_run(result.run_dir, split="test", progress=progress)
    inst = evaluation.instances or {}
    at_50 = next((row for row in inst.get("table", []) if abs(row["threshold"] - 0.5) < 1e-9), {})
    foreground = evaluation.heads.get("foreground", evaluation.scores)
    scores = {
        "f1_iou50": float(at_50.get("f1") or 0.0),
        "average_precision": float(inst.get("average_precision") or 0.0),
        "dice_foreground": float(foreground["dice_mean"]),
        "n_true": float(inst.get("n_true", 0)),
        "n_pred": float(inst.get("n_pred", 0)),
        "train_s": train_s,
    }
    log(
        "\n".join(
            [
                f"done in {time.monotonic() - start:.0f} s (training {train_s:.0f} s)",
                f"  run folder:   {result.run_dir}",
                f"  charts:       {result.run_dir / 'charts'}, {evaluation.out_dir / 'f1_vs_iou.png'}",
                f"  predictions:  {evaluation.out_dir} (<stem>_instances.tif)",
                f"  test objects: F1 {scores['f1_iou50']:.3f} at IoU 0.5 "
                f"({int(at_50.get('tp', 0))} matched of {int(scores['n_true'])} true, {int(scores['n_pred'])} "
                f"predicted; metrics: {evaluation.out_dir / 'metrics_instances.json'})",
                f"  test foreground Dice {scores['dice_foreground']:.3f} on {len(evaluation.per_image)} volumes",
            ]
        )
    )
    return scores
