"""The ``bioseg`` command line: parse → config → call the library. The only place that prints for users.

Heavy modules (torch, lightning) are imported inside the commands so that ``bioseg --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from bioseg.errors import BiosegError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train and apply deep-learning segmentation models to biological images.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _parse_mask_values(text: str | None) -> dict[int, int] | None:
    """``"255:1,0:0"`` → {255: 1, 0: 0}."""
    if not text:
        return None
    try:
        return {int(k): int(v) for k, v in (pair.split(":") for pair in text.split(","))}
    except ValueError:
        raise BiosegError(
            f"--mask-values '{text}' is not RAW:CLASS pairs; write e.g. --mask-values 0:0,255:1"
        ) from None


@app.command()
def check(
    data_dir: Path = typer.Argument(..., help="dataset folder: images/+masks/, train/x+train/y, or a CSV"),
    classes: int | None = typer.Option(None, help="number of classes to check mask values against"),
    mask_values: str | None = typer.Option(None, help="raw→class mapping, e.g. 0:0,255:1"),
    config: Path | None = typer.Option(None, "--config", "-c", help="take classes and mask_values from a config"),
    spatial_dims: int | None = typer.Option(None, help="2 or 3 (default: detected from the first image)"),
) -> None:
    """Discover a dataset and list every problem before training (exit 0 when usable)."""
    from bioseg.data.layouts import discover
    from bioseg.data.validate import check_dataset
    from bioseg.io import detect_spatial_dims

    mapping = _parse_mask_values(mask_values)
    layout, csv, axes = "auto", None, None
    if config is not None:
        from bioseg import config as config_mod

        cfg = config_mod.load(config)
        d = cfg.data
        if d.labels == "semantic":  # instance ids are not class indices: only structure is checked
            classes, mapping = d.num_classes, d.mask_values
        layout, csv, axes, spatial_dims = d.layout, d.csv, d.axes, cfg.model.spatial_dims
    index = discover(data_dir, layout, csv)
    if spatial_dims is None and index.samples:
        spatial_dims = detect_spatial_dims(index.samples[0].image)
    report = check_dataset(
        index, num_classes=classes, mask_values=mapping, progress=True, spatial_dims=spatial_dims or 2, axes=axes
    )
    typer.echo(report.format())
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def split(
    data_dir: Path = typer.Argument(..., help="dataset folder"),
    folds: int = typer.Option(5, help="cross-validation folds (1: a single train/val split)"),
    test_split: float = typer.Option(0.2, help="fraction held out as the test set"),
    val_split: float = typer.Option(0.15, help="validation fraction when --folds 1"),
    stratified: bool = typer.Option(False, help="balance the presence of each class"),
    seed: int = typer.Option(0, help="random seed (same seed, same split)"),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="folder for the split files (default DATA_DIR/splits; set data.splits_dir to it)",
    ),
) -> None:
    """Write deterministic split files under DATA_DIR/splits/ (or --output)."""
    from bioseg.data.layouts import discover
    from bioseg.data.splits import make_splits
    from bioseg.data.validate import check_dataset
    from bioseg.io import detect_spatial_dims

    index = discover(data_dir)
    presence = None
    if stratified and index.samples:
        dims = detect_spatial_dims(index.samples[0].image)
        presence = check_dataset(index, spatial_dims=dims).summary.get("class_presence")
    out = make_splits(
        index,
        folds=folds,
        test_split=test_split,
        val_split=val_split,
        stratified=stratified,
        seed=seed,
        class_presence=presence,
        out_dir=output,
    )
    typer.echo(f"wrote splits to {out}")


@app.command("init-config")
def init_config(
    data_dir: Path = typer.Argument(..., help="dataset folder"),
    output: Path = typer.Option(Path("exp.yaml"), "--output", "-o", help="config file to write"),
    name: str | None = typer.Option(None, help="experiment name (default: the folder name)"),
    force: bool = typer.Option(False, help="overwrite an existing config file"),
) -> None:
    """Write a commented YAML config inferred from the data."""
    from bioseg.init_config import infer_config, write_config

    if output.exists() and not force:
        raise BiosegError(f"{output} exists; pass --force to overwrite it or -o to write elsewhere")
    cfg = infer_config(data_dir, name=name)
    write_config(cfg, output, header=f"bioseg experiment inferred from {data_dir}\nEdit freely; see README.")
    d = cfg["data"]
    what = "instance masks" if d["labels"] == "instance" else f"{len(d['classes'])} classes"
    typer.echo(
        f"wrote {output}: {cfg['model']['spatial_dims']}D, {what}, heads {', '.join(cfg['heads'])}, "
        f"{d['in_channels']} input channel(s), patch {d['patch_size']}, batch {d['batch_size']}, "
        f"normalisation {d['normalization']['mode']}"
    )


@app.command()
def train(
    config: Path = typer.Argument(..., help="experiment YAML"),
    fold: int | None = typer.Option(None, help="fold to train (default: data.fold)"),
    overrides: list[str] = typer.Option([], "--set", help="override a key, e.g. --set train.epochs=5"),
    resume: bool = typer.Option(False, help="continue from checkpoints/last.ckpt"),
    progress: bool = typer.Option(True, help="show the progress bar"),
) -> None:
    """Train a model; writes runs/<name>/fold_<k>/ (config, model/, checkpoints/, metrics.csv, charts/)."""
    from bioseg.engine.trainer import train as run_training

    result = run_training(config, fold=fold, resume=resume, overrides=overrides, progress=progress)
    if result.init_report:
        typer.echo(f"initialised from model.init_from: {result.init_report}")
    score = f"{result.best_score:.4f}" if result.best_score is not None else "n/a"
    typer.echo(f"run folder: {result.run_dir}\nbest {result.monitor}: {score}\ncharts: {result.run_dir / 'charts'}")


@app.command()
def patches(
    config: Path = typer.Argument(..., help="experiment YAML"),
    output: Path = typer.Option(..., "--output", "-o", help="folder for the patch set"),
    per_image: int = typer.Option(32, help="patches drawn per training image"),
    fold: int | None = typer.Option(None, help="fold whose training images are used (default: data.fold)"),
    overrides: list[str] = typer.Option([], "--set", help="override a key, e.g. --set data.patch_size=[24,200,200]"),
    progress: bool = typer.Option(True, help="show the progress bar"),
) -> None:
    """Precompute training patches with their targets and weight maps; train on them with data.patch_set."""
    from bioseg.engine.trainer import write_patches

    out = write_patches(config, output, per_image=per_image, fold=fold, overrides=overrides, progress=progress)
    typer.echo(f"wrote the patch set to {out}; train on it with --set data.patch_set={out}")


@app.command()
def instances(
    inputs: list[Path] = typer.Argument(..., help="boundary probability maps (<stem>_prob.tif from predict)"),
    output: Path = typer.Option(Path("instances"), "--output", "-o", help="output folder"),
    mode: str = typer.Option("boundary", help="boundary: watershed + agglomeration; foreground: split blobs"),
    channel: int = typer.Option(0, help="channel of the probability map to use"),
    threshold: float = typer.Option(0.5, help="boundary (or foreground) probability cut"),
    seed_method: str = typer.Option("h_maxima", help="h_maxima or min_distance"),
    h: float = typer.Option(1.0, help="seed dynamic (h_maxima)"),
    min_distance: int = typer.Option(3, help="voxels between seeds"),
    agglomeration: str = typer.Option("average", help="average, multicut or none"),
    merge_threshold: float = typer.Option(0.5, help="average linkage: merge below this boundary probability"),
    beta: float = typer.Option(0.5, help="multicut boundary bias"),
    min_size: int = typer.Option(0, help="objects smaller than this (voxels) are merged or removed"),
    max_size: int | None = typer.Option(None, help="objects larger than this (voxels) are removed"),
    spacing: str | None = typer.Option(None, help="voxel size, e.g. 2,1,1 (z,y,x)"),
) -> None:
    """Objects from probability maps: <stem>_instances.tif per input (2D or 3D)."""
    from bioseg.postprocess.files import instances_from_files

    written = instances_from_files(
        inputs,
        output,
        mode=mode,
        channel=channel,
        threshold=threshold,
        seed_method=seed_method,
        h=h,
        min_distance=min_distance,
        agglomeration=agglomeration,
        merge_threshold=merge_threshold,
        beta=beta,
        min_size=min_size,
        max_size=max_size,
        spacing=[float(v) for v in spacing.split(",")] if spacing else None,
    )
    typer.echo(f"wrote {len(written)} instance label images to {output}")


@app.command("tune-instances")
def tune_instances(
    run_dir: Path = typer.Argument(..., help="run folder (…/fold_0) of a model that predicts objects"),
    split: str = typer.Option("val", help="labelled split to tune on: train, val or test"),
    iou: float = typer.Option(0.5, help="IoU at which F1 is compared"),
    apply: bool = typer.Option(False, help="write the chosen values into the run's model (predict uses them)"),
    progress: bool = typer.Option(True, help="show the progress bar"),
) -> None:
    """Choose post.instances (threshold, seeds, merging) for the best F1 on a labelled split."""
    from bioseg.postprocess.tuning import tune_run

    doc = tune_run(run_dir, split=split, iou=iou, apply=apply, progress=progress)
    for row in doc["tried"]:
        values = "  ".join(f"{k} {row[k]:g}" for k in doc["chosen"])
        mark = "  <- chosen" if all(row[k] == v for k, v in doc["chosen"].items()) else ""
        scores = f"F1 {row['f1']:.3f}  precision {row['precision']:.3f}  recall {row['recall']:.3f}"
        typer.echo(f"{values}  {scores}{mark}")
    chosen = " ".join(f"post.instances.{k}={v:g}" for k, v in doc["chosen"].items())
    best = max(r["f1"] for r in doc["tried"])
    done = "written into the run's model" if apply else "rerun with --apply to use them"
    typer.echo(f"best F1@{iou:g} on {split} ({doc['images']} images): {best:.3f} with {chosen}; {done}")


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="run folder (…/fold_0) or its model/ folder"),
    inputs: list[Path] = typer.Argument(..., help="images or folders of images"),
    output: Path = typer.Option(Path("predictions"), "--output", "-o", help="output folder"),
    threshold: float | None = typer.Option(None, help="binary threshold (default: the run's)"),
    patch_size: str | None = typer.Option(None, help="tile size, e.g. 256,256 (default: the run's)"),
    overlap: float | None = typer.Option(None, help="tile overlap fraction (default: the run's)"),
    batch_size: int | None = typer.Option(None, help="tiles per forward pass"),
    precision: str | None = typer.Option(None, help="auto, fp32, bf16 or fp16 (default: the run's)"),
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
    progress: bool = typer.Option(True, help="show the progress bar"),
) -> None:
    """Score predictions: metrics.json (per class and mean Dice, IoU, accuracy) and per_image.csv."""
    from bioseg.evaluation import evaluate_folders, evaluate_run

    if truth is None:
        result = evaluate_run(source, split=split, out_dir=output, progress=progress)
    else:
        result = evaluate_folders(
            source,
            truth,
            num_classes=classes,
            mask_values=_parse_mask_values(mask_values),
            instances=instances,
            out_dir=output,
        )
    s = result.scores
    typer.echo(
        f"{len(result.per_image)} images: Dice {s['dice_mean']:.4f}, IoU {s['iou_mean']:.4f}, "
        f"accuracy {s['accuracy']:.4f}\nwrote {result.metrics_json} and {result.out_dir / 'per_image.csv'}"
    )
    if result.instances is not None:
        row = next(r for r in result.instances["table"] if abs(r["threshold"] - 0.5) < 1e-6)
        typer.echo(
            f"objects: F1 {row['f1']:.4f} at IoU 0.5 ({row['tp']} matched of {row['n_true']} true, "
            f"{row['n_pred']} predicted); see {result.out_dir / 'metrics_instances.json'}"
        )


@app.command()
def demo(
    output: Path = typer.Option(Path("bioseg-demo"), "--output", "-o", help="folder for data, run and predictions"),
    three_d: bool = typer.Option(False, "--3d", help="3D membrane-stained cells → boundaries → instances"),
    multitask: bool = typer.Option(False, "--multitask", help="insect wings: outline, veins, spots, domains"),
    progress: bool = typer.Option(True, help="show progress bars"),
) -> None:
    """The whole job on built-in synthetic data: check → split → train → predict → evaluate."""
    if three_d and multitask:
        raise BiosegError("choose one of --3d and --multitask")
    if three_d:
        from bioseg.demo3d import run_demo_3d as run
    elif multitask:
        from bioseg.demo_multitask import run_demo_multitask as run
    else:
        from bioseg.demo import run_demo as run
    run(output, log=typer.echo, progress=progress)

# the experiment commands live in their own module; importing it registers them on ``app``
from bioseg import cli_experiments  # noqa: E402,F401


def main() -> None:
    try:
        app()
    except BiosegError as err:
        typer.echo(f"bioseg: error: {err}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("bioseg: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
