"""``bioseg demo``: the whole job on built-in synthetic cells, in a few minutes on a laptop CPU."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from bioseg.demos.runner import Plan, run
from bioseg.errors import BiosegError

DEMO_IMAGES = 40
DEMO_SIZE = (256, 256)  # (Y, X)
DEMO_OVERRIDES = [
    "train.epochs=12",
    "train.precision=auto",  # bf16 where the CPU has it natively, else fp32 (emulated bf16 is 2× slower)
    "data.patch_size=[128,128]",
    "data.batch_size=8",
    "data.patches_per_epoch=192",
    "infer.patch_size=[256,256]",
    "optim.lr=0.003",
]


def run_demo(
    out_dir: str | Path,
    log: Callable[[str], None] = print,
    progress: bool = True,
    *,
    images: int = DEMO_IMAGES,
    size: Sequence[int] = DEMO_SIZE,
    overrides: Sequence[str] = (),
    threads: int | None = None,
) -> dict[str, float]:
    """Generate data → check → split → init-config → train → predict → evaluate; returns the test scores.

    ``images`` and ``size`` (Y, X) set the data; ``overrides`` (``key=value``) are applied after
    :data:`DEMO_OVERRIDES`; ``threads``: torch threads (None: torch's count, capped at the free cores).
    """
    from bioseg.demos.cells2d import write_cells_dataset

    if isinstance(images, bool) or int(images) != images or images < 3:
        raise BiosegError(f"images={images!r}: the demo needs at least 3 (train, validation and test)")
    size = tuple(int(s) for s in size)
    plan = Plan(
        name="demo",
        generate=partial(write_cells_dataset, n_images=int(images), size=size, seed=0),
        generating=f"generating {int(images)} synthetic cell images in {{data}}",
        header="bioseg demo experiment (inferred by init-config)",
        overrides=[*DEMO_OVERRIDES, *overrides],
        check={"num_classes": 2},
    )
    outcome = run(plan, out_dir, log, progress, threads)
    result, evaluation = outcome.result, outcome.evaluation
    scores = evaluation.scores
    log(
        "\n".join(
            [
                f"done in {outcome.elapsed_s:.0f} s",
                f"  run folder:   {result.run_dir}",
                f"  charts:       {result.run_dir / 'charts'}",
                f"  predictions:  {evaluation.out_dir}",
                f"  test Dice {scores['dice_mean']:.3f}, IoU {scores['iou_mean']:.3f} "
                f"on {len(evaluation.per_image)} images (metrics: {evaluation.metrics_json})",
            ]
        )
    )
    return scores
