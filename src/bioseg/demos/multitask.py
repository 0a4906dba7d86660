"""``bioseg demo --multitask``: four heads on one network, on procedural insect wings.

Synthetic wings (:mod:`bioseg.demos.wings`, the seed's folder layout ``train|val|test/images`` +
``masks/<head>/``) → check → train a compact multi-head UNet (``hoppernet_lite`` with a sixth level) on
whole wings fitted into a square, with a loss per head (wing: BCE + Dice; veins: BCE + Dice + clDice;
spots: focal + Dice; domains: cross-entropy over 5 classes) and head freezing → evaluate the test
images per head → run folder, ``charts/training.gif``, ``charts/heads.png`` and per-head scores against
the target (:data:`BARS`), in under 10 minutes on a 2-core CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bioseg.demos.runner import Outcome, Plan, folders, run
from bioseg.errors import BiosegError

if TYPE_CHECKING:
    from bioseg.config import Experiment

DEMO_MT_IMAGES = 80
DEMO_MT_SIZE = (176, 192)  # (Y, X): the longest side is the square's, so fitting pads and never shrinks
DEMO_MT_RESIZE = 192  # veins are 2–4 px wide whatever the image size: a smaller square trains faster
DEMO_MT_EPOCHS = 70
DEMO_MT_SPLIT = (0.7, 0.15, 0.15)

#: the seed's composite loss, per head
DEMO_MT_HEADS: dict[str, dict[str, Any]] = {
    "wing": {"type": "binary", "loss": [{"name": "bce", "pos_weight": 2.0}, {"name": "dice"}]},
    "veins": {
        "type": "binary",
        "weight": 2.0,  # the hardest head: thin, low contrast, partly hidden under spots
        "loss": [
            {"name": "bce", "pos_weight": 4.0},
            {"name": "dice"},
            {"name": "cldice", "weight": 0.5, "iterations": 3},  # veins are at most 3 px wide
        ],
    },
    "spots": {"type": "binary", "loss": [{"name": "focal", "alpha": 0.85, "gamma": 2.0}, {"name": "dice"}]},
    "domains": {"type": "multiclass", "classes": 5, "loss": [{"name": "ce"}]},
}

DEMO_MT_TRAIN: dict[str, Any] = {
    "precision": "auto",  # bf16 where the CPU has it natively, else fp32 (emulated bf16 is 2× slower)
    "snapshots": 2,
    "max_time_minutes": 8.5,  # a guard on a busy machine, so that the whole demo stays within 10 minutes
    "head_freezing": {"metric": "dice_mean", "freeze_above": 0.95, "unfreeze_below": 0.90},
}

#: the bar, on validation images: Dice per head, except the veins, judged by clDice (a thin network's
#: topology, which a one-pixel shift of its edges does not change); their Dice is reported beside
BARS: dict[str, float] = {"wing": 0.85, "spots": 0.85, "domains": 0.85, "veins_cldice": 0.8}


def demo_experiment(data_dir: Path, runs_dir: Path, epochs: int, resize: int = DEMO_MT_RESIZE) -> dict[str, Any]:
    """The demo's experiment as a config dict (``bioseg train`` accepts it as YAML).

    Measured on a shared 2-core CPU (one thread): batches of 2 whole wings at lr 0.006 learnt the veins
    faster per second than batches of 4 at 0.004–0.02; a sixth level (one more halving: the receptive field
    spans the wing) helped the veins a little at no cost, 1.5× wider levels did not pay for their time.
    """
    return {
        "name": "demo_multitask",
        "output_dir": str(runs_dir),
        "data": {
            "root": str(data_dir),
            "layout": "multitask",
            "in_channels": 3,
            "resize": int(resize),
            "patch_size": [int(resize)] * 2,  # whole wings: every head sees the whole specimen
            "batch_size": 2,
            "patches_per_epoch": 48,
        },
        "model": {"name": "hoppernet_lite", "widths": [8, 16, 24, 32, 32, 32]},
        "heads": DEMO_MT_HEADS,
        "train": {**DEMO_MT_TRAIN, "epochs": int(epochs)},
        "optim": {"lr": 0.006},
        "augment": [
            {"name": "flip", "p": 0.5},
            {"name": "rot90", "p": 0.5},
            {"name": "brightness_contrast", "p": 0.3},
        ],
        "infer": {"patch_size": [int(resize)] * 2},
    }


# --- reading the history (metrics.csv rows) ---------------------------------------------------------


def _value(row: dict[str, float], key: str) -> float:
    value = row.get(key, math.nan)
    return float(value) if value is not None else math.nan


def best_values(history: Sequence[dict[str, float]], key: str) -> tuple[float, int | None]:
    """The highest value of ``key`` over the epochs and its epoch; ``(nan, None)`` when never logged."""
    best, epoch = math.nan, None
    for row in history:
        v = _value(row, key)
        if not math.isnan(v) and (math.isnan(best) or v > best):
            best, epoch = v, int(_value(row, "epoch"))
    return best, epoch


def freezing_events(history: Sequence[dict[str, float]], heads: Sequence[str]) -> list[dict[str, Any]]:
    """Each change of a ``frozen/<head>`` column: ``{"head", "epoch", "frozen"}``, in epoch order.

    ``frozen/<head>`` in a row is the state the epoch trained with; a change between rows ``e - 1`` and
    ``e`` is reported at epoch ``e`` (decided by the validation that ended epoch ``e - 1``).
    """
    events = []
    previous = dict.fromkeys(heads, 0.0)
    for row in history:
        for head in heads:
            state = _value(row, f"frozen/{head}")
            if math.isnan(state):
                continue
            if state != previous[head]:
                events.append({"head": head, "epoch": int(_value(row, "epoch")), "frozen": bool(state)})
            previous[head] = state
    return events


def cldice_on_split(pred_dir: Path, data_dir: Path, head: str = "veins", split: str = "test") -> float:
    """Mean clDice over the ``split`` images of ``head``'s predicted labels (``pred_dir``) against its masks."""
    import numpy as np
    import tifffile

    from bioseg.metrics.skeleton import cldice_score

    scores = []
    for truth_path in sorted((data_dir / split / "masks" / head).glob(f"*_seg_{head}.tif")):
        stem = truth_path.name.removesuffix(f"_seg_{head}.tif")
        pred_path = pred_dir / f"{stem}_{head}_labels.tif"
        if not pred_path.is_file():
            raise BiosegError(f"{pred_path} is missing: evaluate the run on the test split first")
        scores.append(cldice_score(tifffile.imread(pred_path) > 0, np.asarray(tifffile.imread(truth_path)) > 0))
    return float(np.mean(scores)) if scores else math.nan


# --- the demo --------------------------------------------------------------------------------------


def plot_heads(
    history: Sequence[dict[str, float]], heads: Sequence[str], path: str | Path, bars: dict[str, float] | None = None
) -> Path:
    """``charts/heads.png``: one panel per head with its validation Dice over the epochs (and clDice where
    logged), the bar as a dashed line and the epochs the head trained frozen shaded."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    bars = bars or {}
    cols = min(2, len(heads))
    rows = -(-len(heads) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    epochs = [_value(r, "epoch") for r in history]
    for k, head in enumerate(heads):
        ax = fig.add_subplot(rows, cols, k + 1)
        for e, r in zip(epochs, history, strict=True):
            if _value(r, f"frozen/{head}") == 1.0:
                ax.axvspan(e - 0.5, e + 0.5, color="tab:blue", alpha=0.12, lw=0)
        lines = ((f"val/{head}/dice_mean", "Dice", "tab:blue"), (f"val/{head}/cldice", "clDice", "tab:orange"))
        for key, label, colour in lines:
            pts = [(e, _value(r, key)) for e, r in zip(epochs, history, strict=True)]
            pts = [(e, v) for e, v in pts if not math.isnan(v)]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, color=colour, label=label, marker="o" if len(pts) < 20 else None, ms=3)
        for key, colour in ((head, "tab:blue"), (f"{head}_cldice", "tab:orange")):
            if key in bars:
                ax.axhline(bars[key], color=colour, ls="--", lw=0.8)
        best, _ = best_values(history, f"val/{head}/dice_mean")
        ax.set_title(f"{head}: best Dice {best:.3f} (shaded: frozen)", fontsize=9)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="lower right")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def run_demo_multitask(
    out_dir: str | Path,
    log: Callable[[str], None] = print,
    progress: bool = True,
    *,
    images: int = DEMO_MT_IMAGES,
    epochs: int = DEMO_MT_EPOCHS,
    size: Sequence[int] = DEMO_MT_SIZE,
    resize: int = DEMO_MT_RESIZE,
    threads: int | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, float]:
    """Generate wings → check → train four heads → evaluate the test images.

    ``images`` (split 70/15/15 into train/val/test), ``epochs``, ``size`` (Y, X of the generated images)
    and ``resize`` (the square the network sees) set the budget; ``threads``: torch threads for training
    and prediction (None: torch's count capped at the cores other processes leave free); ``overrides``
    (``key=value``) apply on top of :func:`demo_experiment`.

    Returns, per head, the test Dice (``dice_<head>``: foreground Dice of binary heads, mean over the four
    domains for ``domains``) and the best validation Dice over the epochs (``val_dice_<head>``); the veins'
    clDice on the test images (``cldice_veins``), on validation at the kept epoch (``val_cldice_veins``)
    and its best (``val_cldice_veins_best``); ``epochs_run``, ``freeze_events`` (freezes + unfreezes),
    ``threads``, ``train_s`` and ``total_s`` (seconds).
    """
    from bioseg.config import to_dict
    from bioseg.demos.wings import write_wing_dataset

    size, cfg = _checked_budget(out_dir, images, epochs, size, resize, overrides)
    heads = list(DEMO_MT_HEADS)
    plan = Plan(
        name="demo_multitask",
        generate=partial(write_wing_dataset, n=int(images), size=size, seed=0, split=DEMO_MT_SPLIT),
        generating=f"generating {int(images)} synthetic wings {size[0]}×{size[1]} (heads: {', '.join(heads)}) "
        "in {data}",
        header="bioseg multi-task demo experiment",
        experiment=to_dict(cfg),
        check={"heads": cfg.heads},  # every head's masks against its classes
        checking="checking the images and every head's masks",
        split=False,  # the wings come in train/val/test folders
        training=f"training {len(heads)} heads on {cfg.model.name} at {resize}², head freezing on",
        evaluating=("predicting and evaluating the test images, every head",),
        steps=5,
    )
    outcome = run(plan, out_dir, log, progress, threads)
    scores, kept_epoch, events = _scores(outcome, heads)
    chart = plot_heads(outcome.result.history, heads, outcome.result.run_dir / "charts" / "heads.png", BARS)
    scores["total_s"] = outcome.elapsed_s
    outcome.steps("summary")
    log(_summary(outcome, scores, heads, kept_epoch, events, chart))
    return scores


def _checked_budget(
    out_dir: str | Path, images: int, epochs: int, size: Sequence[int], resize: int, overrides: Sequence[str]
) -> tuple[tuple[int, ...], Experiment]:
    """The image size and the resolved experiment, once every setting is known to work: refused before
    any data is generated."""
    from bioseg.config import from_dict
    from bioseg.nn.bundle import build_network

    if isinstance(images, bool) or int(images) != images or images < 3:
        raise BiosegError(f"images={images!r}: the demo needs at least 3 (train, validation and test)")
    size = tuple(int(s) for s in size)
    if len(size) != 2 or max(size) > resize:
        raise BiosegError(
            f"size={size}: give (Y, X) with both at most resize={resize} (larger images would be shrunk and "
            "thin veins lost), e.g. size=(176, 192)"
        )
    where = folders(out_dir)
    cfg = from_dict(demo_experiment(where.data, where.runs, epochs, resize), "demo", list(overrides))
    divisor = max(build_network(cfg).size_divisor)
    if resize % divisor:
        raise BiosegError(
            f"resize={resize} is not a multiple of {divisor}, which the network's poolings need: "
            f"pick e.g. {max(divisor, resize // divisor * divisor)}"
        )
    return size, cfg


def _scores(outcome: Outcome, heads: list[str]) -> tuple[dict[str, float], int | None, list[dict[str, Any]]]:
    """The scores :func:`run_demo_multitask` returns (but ``total_s``), the epoch whose weights were kept
    and the head freezing events."""
    result, evaluation = outcome.result, outcome.evaluation
    history = result.history
    kept_epoch = best_values(history, result.monitor)[1]
    kept = next((r for r in history if kept_epoch is not None and int(_value(r, "epoch")) == kept_epoch), {})
    scores: dict[str, float] = {f"dice_{h}": float(evaluation.heads[h]["dice_mean"]) for h in heads}
    scores |= {f"val_dice_{h}": best_values(history, f"val/{h}/dice_mean")[0] for h in heads}
    scores["cldice_veins"] = cldice_on_split(evaluation.out_dir, outcome.folders.data)
    scores["val_cldice_veins"] = _value(kept, "val/veins/cldice")
    scores["val_cldice_veins_best"] = best_values(history, "val/veins/cldice")[0]
    events = freezing_events(history, heads)
    scores |= {"epochs_run": float(len(history)), "freeze_events": float(len(events))}
    scores |= {"threads": float(outcome.threads), "train_s": outcome.train_s}
    return scores, kept_epoch, events


def _summary(
    outcome: Outcome,
    scores: dict[str, float],
    heads: list[str],
    kept_epoch: int | None,
    events: list[dict[str, Any]],
    chart: Path,
) -> str:
    def verdict(value: float, bar: float) -> str:
        return "meets" if value >= bar else "below"

    run_dir, evaluation = outcome.result.run_dir, outcome.evaluation
    lines = [
        f"done in {scores['total_s']:.0f} s (training {outcome.train_s:.0f} s, {int(scores['epochs_run'])} epochs)",
        f"  run folder:   {run_dir}",
        f"  animation:    {run_dir / 'charts' / 'training.gif'} (every head, one frame per epoch)",
        f"  heads chart:  {chart} (validation Dice per head, frozen epochs shaded)",
        f"  predictions:  {evaluation.out_dir} (metrics: {evaluation.metrics_json})",
        f"  Dice per head: test ({len(evaluation.per_image)} images) | best validation vs the bar",
    ]
    for h in heads:
        val = scores[f"val_dice_{h}"]
        bar = f"{verdict(val, BARS[h])} {BARS[h]}" if h in BARS else "(judged by clDice)"
        lines.append(f"    {h:<8} {scores[f'dice_{h}']:.3f} | {val:.3f} {bar}")
    cl_best = scores["val_cldice_veins_best"]
    lines.append(
        f"  veins clDice: test {scores['cldice_veins']:.3f} | best validation {cl_best:.3f} "
        f"{verdict(cl_best, BARS['veins_cldice'])} {BARS['veins_cldice']} "
        f"(validation {scores['val_cldice_veins']:.3f} at epoch {kept_epoch}, the weights kept)"
    )
    if events:
        said = ", ".join(f"{e['head']} {'froze' if e['frozen'] else 'unfroze'} at epoch {e['epoch']}" for e in events)
        lines.append(f"  head freezing: {said}")
    else:
        lines.append("  head freezing: no head reached the freezing threshold")
    return "\n".join(lines)
