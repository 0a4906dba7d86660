"""Commands that apply and score a trained model: predict, evaluate, instances, tune-instances.

Heavy modules are imported inside the commands so that ``bioseg --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from bioseg.cli.app import app, parse_mask_values
from bioseg.cli.instance_options import instance_config, option, parse_spacing
from bioseg.errors import BiosegError

PRECISION_HELP = "auto, fp32, bf16 or fp16 (default: the run's infer.precision)"
RUN_HELP = "run folder (…/fold_0), its model/ folder, or an experiment folder (runs/<name>: the ensemble of its folds)"
ENSEMBLE_HELP = "another run to average with RUN_DIR (repeat: --ensemble A --ensemble B)"
TTA_HELP = "average the 8 (2D) or 16 (3D) flipped and turned views (default: the run's infer.tta)"
RESCALE_HELP = "match objects to the training size: off, auto (measured per image) or a factor (default: the run's)"
UNCERTAINTY_HELP = "write <stem>_uncertainty.tif: entropy, and mutual information between members/views"


def _ensemble_option():
    return typer.Option([], "--ensemble", help=ENSEMBLE_HELP)


def _rescale_option():
    return typer.Option(None, help=RESCALE_HELP)


def _object_size_option():
    return typer.Option(None, help="diameter of the objects in these images, pixels: rescale by it")


def _tta_option():
    return typer.Option(None, "--tta/--no-tta", help=TTA_HELP)


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help=RUN_HELP),
    inputs: list[Path] = typer.Argument(..., help="images or folders of images"),
    output: Path = typer.Option(Path("predictions"), "--output", "-o", help="output folder"),
    threshold: float | None = typer.Option(None, help="binary threshold (default: the run's)"),
    patch_size: str | None = typer.Option(None, help="tile size, e.g. 256,256 (default: the run's)"),
    overlap: float | None = typer.Option(None, help="tile overlap fraction (default: the run's)"),
    batch_size: int | None = typer.Option(None, help="tiles per forward pass"),
    precision: str | None = typer.Option(None, help=PRECISION_HELP),
    rescale: str | None = _rescale_option(),
    object_size: float | None = _object_size_option(),
    ensemble: list[Path] = _ensemble_option(),
    tta: bool | None = _tta_option(),
    uncertainty: bool = typer.Option(False, "--uncertainty", help=UNCERTAINTY_HELP),
    progress: bool = typer.Option(True, help="show the progress bar"),
) -> None:
    """Predict images: <stem>_prob.tif, <stem>_labels.tif and <stem>_overlay.png per image."""
    from bioseg.inference.files import predict_files

    patch = [int(v) for v in patch_size.split(",")] if patch_size else None
    written = predict_files(
        run_dir,
        inputs,
        output,
        progress=progress,
        threshold=threshold,
        patch_size=patch,
        overlap=overlap,
        batch_size=batch_size,
        precision=precision,
        rescale=rescale,
        object_size=object_size,
        ensemble=ensemble,
        tta=tta,
        uncertainty=uncertainty,
    )
    typer.echo(f"wrote {len(written)} files to {output}")


@app.command()
def evaluate(
    source: Path = typer.Argument(..., help="a run folder, or a folder of predicted label images"),
    truth: Path | None = typer.Argument(None, help="folder of true masks (when SOURCE holds predictions)"),
    split: str = typer.Option("test", help="split of the run's dataset: train, val or test"),
    output: Path | None = typer.Option(None, "--output", "-o", help="where metrics.json and per_image.csv go"),
    classes: int | None = typer.Option(None, help="number of classes (folder mode)"),
    mask_values: str | None = typer.Option(None, help="raw→class mapping of the true masks, e.g. 0:0,255:1"),
    instances: bool = typer.Option(False, help="folder mode: score <stem>_instances.tif against instance masks"),
    background_class: str | None = typer.Option(
        None, help="folder mode: class left out of the means, or 'none' [default: 0]; a run reads data.background_class"
    ),
    precision: str | None = typer.Option(None, help=PRECISION_HELP),
    rescale: str | None = _rescale_option(),
    object_size: float | None = _object_size_option(),
    ensemble: list[Path] = _ensemble_option(),
    tta: bool | None = _tta_option(),
    uncertainty: bool = typer.Option(False, "--uncertainty", help=UNCERTAINTY_HELP),
    progress: bool = typer.Option(True, help="show the progress bar"),
) -> None:
    """Score predictions: metrics.json (per class and mean Dice, IoU, accuracy; a run's calibration) and
    per_image.csv."""
    from bioseg.workflows.evaluate import evaluate_folders, evaluate_run

    if truth is None:
        if background_class is not None:
            raise BiosegError("--background-class is for folders of predictions; a run reads data.background_class")
        result = evaluate_run(
            source, split=split, out_dir=output, progress=progress, precision=precision, rescale=rescale,
            object_size=object_size, ensemble=ensemble, tta=tta, uncertainty=uncertainty,
        )
    else:
        given = [n for n, v in (("--precision", precision), ("--ensemble", ensemble), ("--tta", tta),
                                ("--uncertainty", uncertainty), ("--rescale", rescale),
                                ("--object-size", object_size)) if v]  # fmt: skip
        if given:
            raise BiosegError(f"{given[0]} applies to a run folder; predictions in a folder are scored as they are")
        result = evaluate_folders(
            source,
            truth,
            num_classes=classes,
            mask_values=parse_mask_values(mask_values),
            instances=instances,
            out_dir=output,
            background_class=_parse_background(background_class or "0"),
        )
    _say_scores(result)


def _say_scores(result) -> None:
    """Per head Dice, IoU and accuracy; a run's calibration; objects when predicted."""
    typer.echo(f"{len(result.per_image)} images")
    for head, s in result.heads.items():
        name = f"{head}: " if len(result.heads) > 1 else ""
        typer.echo(
            f"{name}Dice {s['dice_mean']:.4f}, IoU {s['iou_mean']:.4f}, accuracy {s['accuracy']:.4f}; "
            f"Dice and IoU are means {result.means[head]}"
        )
    for head, c in result.calibration.items():
        name = f"{head}: " if len(result.calibration) > 1 else ""
        area = f"{c['uncertainty_auroc']:.4f}" if c["uncertainty_auroc"] is not None else "n/a (no wrong pixels)"
        typer.echo(f"{name}calibration error (ECE) {c['ece']:.4f}; uncertainty finds wrong pixels with AUROC {area}")
    typer.echo(f"wrote {result.metrics_json} and {result.out_dir / 'per_image.csv'}")
    if result.instances is not None:
        row = next(r for r in result.instances["table"] if abs(r["threshold"] - 0.5) < 1e-6)
        typer.echo(
            f"objects: F1 {row['f1']:.4f} at IoU 0.5 ({row['tp']} matched of {row['n_true']} true, "
            f"{row['n_pred']} predicted); see {result.out_dir / 'metrics_instances.json'}"
        )


def _parse_background(text: str) -> int | None:
    """``"0"`` → 0, ``"none"`` → None."""
    if text.strip().lower() in ("none", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        raise BiosegError(f"--background-class '{text}' is not a class; write a class index, e.g. 0, or none") from None


@app.command()
def instances(
    inputs: list[Path] = typer.Argument(..., help="probability maps (<stem>_prob.tif from predict)"),
    output: Path = typer.Option(Path("instances"), "--output", "-o", help="output folder"),
    mode: str = typer.Option("boundary", help="boundary: watershed + agglomeration; foreground: split blobs"),
    channel: int = typer.Option(0, help="channel of the probability map to use"),
    spacing: str | None = typer.Option(None, help="voxel size, e.g. 2,1,1 (z,y,x); default: isotropic"),
    threshold: float | None = option("threshold"),
    foreground_method: str | None = option("foreground_method"),
    seed_method: str | None = option("seed_method"),
    h: str | None = option("h", "--h"),
    min_distance: str | None = option("min_distance"),
    sigma_seeds: str | None = option("sigma_seeds"),
    agglomeration: str | None = option("agglomeration"),
    merge_threshold: float | None = option("merge_threshold"),
    beta: float | None = option("beta"),
    weight_by_size: bool | None = option("weight_by_size", "--weight-by-size/--no-weight-by-size"),
    min_size: int | None = option("min_size"),
    max_size: int | None = option("max_size"),
    small_objects: str | None = option("small_objects"),
) -> None:
    """Objects from probability maps: <stem>_instances.tif per input (2D or 3D).

    The options are post.instances of an experiment config; those that --mode does not read are refused.
    Lengths (--h, --min-distance, --sigma-seeds) are voxels of the finest axis, or micrometres when written
    so (--h '0.5 um', which needs --spacing).
    """
    from bioseg.postprocess.files import instances_from_files

    given = dict(
        threshold=threshold, foreground_method=foreground_method, seed_method=seed_method, h=h,
        min_distance=min_distance, sigma_seeds=sigma_seeds, agglomeration=agglomeration,
        merge_threshold=merge_threshold, beta=beta, weight_by_size=weight_by_size, min_size=min_size,
        max_size=max_size, small_objects=small_objects,
    )  # fmt: skip
    params = instance_config(mode, given)
    voxel = parse_spacing(spacing)
    written = instances_from_files(inputs, output, params, channel=channel, spacing=voxel)
    typer.echo(f"wrote {len(written)} instance label images to {output}")


@app.command("tune-instances")
def tune_instances(
    run_dir: Path = typer.Argument(..., help=RUN_HELP),
    split: str = typer.Option("val", help="labelled split to tune on: train, val or test"),
    iou: float = typer.Option(0.5, help="IoU at which F1 is compared"),
    grid: list[str] = typer.Option(
        [],
        help="NAME=V1,V2,… of post.instances to search, repeatable, e.g. --grid 'h=0.5 um,1 um' --grid "
        "threshold=0.4,0.6; lengths in voxels or with their unit. Given: only these are searched (default: "
        "the grid of the mode)",
    ),
    apply: bool = typer.Option(False, help="write the chosen values into the run's model (predict uses them)"),
    precision: str | None = typer.Option(None, help=PRECISION_HELP),
    ensemble: list[Path] = _ensemble_option(),
    tta: bool | None = _tta_option(),
    progress: bool = typer.Option(True, help="show the progress bar"),
) -> None:
    """Choose post.instances (threshold, seeds, merging) for the best F1 on a labelled split."""
    from bioseg.workflows.tune_instances import tune_run

    doc = tune_run(
        run_dir, split=split, grid=grid or None, iou=iou, apply=apply, progress=progress, precision=precision,
        ensemble=ensemble, tta=tta,
    )  # fmt: skip
    for row in doc["tried"]:
        values = "  ".join(f"{k} {_number(row[k])}" for k in doc["chosen"])
        mark = "  <- chosen" if all(row[k] == v for k, v in doc["chosen"].items()) else ""
        scores = f"F1 {row['f1']:.3f}  precision {row['precision']:.3f}  recall {row['recall']:.3f}"
        typer.echo(f"{values}  {scores}{mark}")
    chosen = " ".join(f"post.instances.{k}={_number(v)}" for k, v in doc["chosen"].items())
    best = max(r["f1"] for r in doc["tried"])
    done = "written into the run's model" if apply else "rerun with --apply to use them"
    typer.echo(f"best F1@{iou:g} on {split} ({doc['images']} images): {best:.3f} with {chosen}; {done}")


def _number(value: object) -> str:
    """A tuned value as written: numbers short (0.5, 2), lengths with their unit ('0.5 um')."""
    return f"{value:g}" if isinstance(value, int | float) else repr(value)


@app.command()
def calibrate(
    run_dir: Path = typer.Argument(..., help="run folder (…/fold_0) or its model/ folder"),
    split: str = typer.Option("val", help="labelled split the temperature is fitted on"),
    apply: bool = typer.Option(True, "--apply/--no-apply", help="write the temperatures into the run's model"),
    precision: str | None = typer.Option(None, help=PRECISION_HELP),
    progress: bool = typer.Option(True, help="show the progress bar"),
) -> None:
    """Temperature scaling: one temperature per head, fitted on SPLIT, so that probabilities match accuracy."""
    from bioseg.workflows.calibrate import calibrate_run

    doc = calibrate_run(run_dir, split=split, apply=apply, progress=progress, precision=precision)
    for head, h in doc["heads"].items():
        typer.echo(
            f"{head}: temperature {h['temperature']:.3g}; calibration error (ECE) {h['ece_before']:.4f} → "
            f"{h['ece_after']:.4f}, NLL {h['nll_before']:.4f} → {h['nll_after']:.4f} ({h['pixels']} {split} pixels)"
        )
    done = "written into the run's model (infer.temperature)" if apply else "not written (--no-apply)"
    typer.echo(f"temperatures {done}; see calibration.json and calibration.png in the run folder")
