"""``bioseg demo --3d``: 3D instance segmentation end to end on procedural membrane-stained volumes.

Synthetic tissue (cells packed in 3D, their walls stained, anisotropic voxels) → check → split →
init-config (a foreground head and a boundary head with a U-Net weight map) → train → evaluate with
objects (boundary watershed + agglomeration) → F1 at IoU 0.5 and the F1-vs-IoU chart, in a few minutes
on a laptop CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from bioseg.demos.runner import Outcome, Plan, run
from bioseg.errors import BiosegError

DEMO3D_VOLUMES = 10
DEMO3D_SHAPE = (32, 128, 128)  # (Z, Y, X), z voxels twice as deep as wide: 20-40 cells a volume
DEMO3D_EPOCHS = 60  # quiet 2 cores: 2.4 min, test F1@0.5 about 0.8 (24 epochs: 1 min, 0.73-0.79)
DEMO3D_OVERRIDES = [
    "train.precision=auto",  # bf16 where the CPU has it natively, else fp32 (emulated bf16 is 2× slower)
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
    "infer.precision=auto",
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
    torch's count, capped at the cores other processes leave free). Returns the test scores: ``f1_iou50``
    (F1 of objects matched at IoU 0.5), ``average_precision``, ``dice_foreground`` (the foreground head's
    voxel Dice), ``n_true``, ``n_pred`` and ``train_s`` (seconds of training).
    """
    from bioseg.demos.cells3d import write_cells_3d_dataset

    if isinstance(volumes, bool) or int(volumes) != volumes or volumes < 3:
        raise BiosegError(f"volumes={volumes!r}: the demo needs at least 3 (train, validation and test)")
    shape = tuple(int(s) for s in shape)
    plan = Plan(
        name="demo3d",
        generate=partial(write_cells_3d_dataset, n=int(volumes), shape=shape, seed=0, kind="membrane"),
        generating=f"generating {int(volumes)} synthetic 3D volumes of {'×'.join(map(str, shape))} voxels "
        "(membrane stain) in {data}",
        header="bioseg 3D demo experiment (inferred by init-config)",
        overrides=[*DEMO3D_OVERRIDES, f"train.epochs={int(epochs)}", *overrides],
        check={"spatial_dims": 3},
        training="training a foreground head and a boundary head",
        evaluating=("predicting", "evaluating the test volumes: boundaries → watershed → agglomeration"),
    )
    outcome = run(plan, out_dir, log, progress, threads)
    scores, matched = _scores(outcome)
    log(_summary(outcome, scores, matched))
    return scores


def _scores(outcome: Outcome) -> tuple[dict[str, float], int]:
    """The demo's test scores, and the true objects matched at IoU 0.5."""
    evaluation = outcome.evaluation
    inst = evaluation.instances or {}
    at_50 = next((row for row in inst.get("table", []) if abs(row["threshold"] - 0.5) < 1e-9), {})
    foreground = evaluation.heads.get("foreground", evaluation.scores)
    scores = {
        "f1_iou50": float(at_50.get("f1") or 0.0),
        "average_precision": float(inst.get("average_precision") or 0.0),
        "dice_foreground": float(foreground["dice_mean"]),
        "n_true": float(inst.get("n_true", 0)),
        "n_pred": float(inst.get("n_pred", 0)),
        "train_s": outcome.train_s,
    }
    return scores, int(at_50.get("tp", 0))


def _summary(outcome: Outcome, scores: dict[str, float], matched: int) -> str:
    run_dir, evaluation = outcome.result.run_dir, outcome.evaluation
    return "\n".join(
        [
            f"done in {outcome.elapsed_s:.0f} s (training {outcome.train_s:.0f} s)",
            f"  run folder:   {run_dir}",
            f"  charts:       {run_dir / 'charts'}, {evaluation.out_dir / 'f1_vs_iou.png'}",
            f"  predictions:  {evaluation.out_dir} (<stem>_instances.tif)",
            f"  test objects: F1 {scores['f1_iou50']:.3f} at IoU 0.5 "
            f"({matched} matched of {int(scores['n_true'])} true, {int(scores['n_pred'])} "
            f"predicted; metrics: {evaluation.out_dir / 'metrics_instances.json'})",
            f"  test foreground Dice {scores['dice_foreground']:.3f} on {len(evaluation.per_image)} volumes",
        ]
    )
