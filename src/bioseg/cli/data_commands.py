"""Commands that prepare a dataset: check, split, init-config, crop, patches.

Heavy modules are imported inside the commands so that ``bioseg --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from bioseg.cli.app import app, parse_mask_values, parse_size, parse_voxel_size
from bioseg.errors import BiosegError


@app.command()
def check(
    data_dir: Path = typer.Argument(..., help="dataset folder: images/+masks/, train/x+train/y, or a CSV"),
    classes: int | None = typer.Option(None, help="number of classes to check mask values against"),
    mask_values: str | None = typer.Option(None, help="raw→class mapping, e.g. 0:0,255:1"),
    config: Path | None = typer.Option(None, "--config", "-c", help="take classes and mask_values from a config"),
    spatial_dims: int | None = typer.Option(None, help="2 or 3 (default: detected from the first image)"),
) -> None:
    """Discover a dataset and list every problem before training (exit 0 when usable)."""
    mapping = parse_mask_values(mask_values)
    layout, csv, axes, heads, threshold, voxel = "auto", None, None, None, None, None
    if config is not None:  # first, so that a config error answers at once (nothing heavy imported yet)
        from bioseg import config as config_mod

        cfg = config_mod.load(config)
        d = cfg.data
        if d.labels == "semantic":  # instance ids are not class indices: only structure is checked
            classes, mapping, heads, threshold = d.num_classes, d.mask_values, cfg.heads, d.mask_threshold
        layout, csv, axes, spatial_dims, voxel = d.layout, d.csv, d.axes, cfg.model.spatial_dims, d.voxel_size
    from bioseg.data.layouts import discover
    from bioseg.data.validate import check_dataset
    from bioseg.io import detect_spatial_dims

    index = discover(data_dir, layout, csv)
    if spatial_dims is None and index.samples:
        spatial_dims = detect_spatial_dims(index.samples[0].image)
    report = check_dataset(
        index,
        num_classes=classes,
        mask_values=mapping,
        progress=True,
        spatial_dims=spatial_dims or 2,
        axes=axes,
        heads=heads,
        mask_threshold=threshold,
        voxel_size=voxel,
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
    minutes: float | None = typer.Option(
        None, help="training time you have: a step is timed here and batch, patch, epochs are sized to fit it"
    ),
    voxel_size: str | None = typer.Option(
        None, help="voxel size in µm, z,y,x (e.g. 2,0.5,0.5), for volumes whose files do not give it"
    ),
) -> None:
    """Write a commented YAML config inferred from the data (statistics from the training split)."""
    from bioseg.io.folders import check_output_folder
    from bioseg.workflows.init_config import infer_setup, write_config

    if output.is_dir():
        raise BiosegError(f"{output} is a folder; -o takes the config file to write, e.g. -o {output / 'exp.yaml'}")
    check_output_folder(output.parent, "folder of the config")
    if output.exists() and not force:
        raise BiosegError(f"{output} exists; pass --force to overwrite it or -o to write elsewhere")
    splits = output.parent / f"{output.stem}_splits"  # used only when the dataset folder is read-only
    inferred = infer_setup(data_dir, name=name, voxel_size=parse_voxel_size(voxel_size), splits_elsewhere=splits)
    cfg = inferred.config
    header = f"bioseg experiment inferred from {data_dir}\nEdit freely; see README.\n{inferred.notes[0]}."
    if minutes is not None:
        from bioseg.workflows.training_budget import fit_to_budget

        cfg, plan = fit_to_budget(cfg, minutes)
        header += f"\nSized for {minutes:g} minutes of training: {plan.describe()}."
        typer.echo(f"sized for {minutes:g} minutes: {plan.describe()}")
    write_config(cfg, output, header=header, comments=inferred.comments)
    typer.echo(inferred.notes[0])
    for note in inferred.notes[1:]:
        typer.echo(f"warning: {note}")
    d = cfg["data"]
    what = "instance masks" if d["labels"] == "instance" else f"{len(d['classes'])} classes"
    typer.echo(
        f"wrote {output}: {cfg['model']['spatial_dims']}D, {what}, heads {', '.join(cfg['heads'])}, "
        f"{d['in_channels']} input channel(s), patch {d['patch_size']}, batch {d['batch_size']}, "
        f"normalisation {d['normalization']['mode']}"
    )
    if len(inferred.notes) > 1:
        typer.echo(f"read the {len(inferred.notes) - 1} warning(s) above and edit {output} where they say")


@app.command()
def crop(
    images: Path = typer.Argument(..., help="folder of large images (or one image file); any channel count"),
    masks: Path = typer.Argument(..., help="folder of their masks, paired by file name (or one mask file)"),
    output: Path = typer.Option(..., "--output", "-o", help="new dataset folder (images/, masks/, crops.csv)"),
    size: str = typer.Option("400", help="crop size in pixels: one value, or one per axis (e.g. 32,128,128)"),
    per_object: bool = typer.Option(
        True, "--per-object/--grid", help="one crop centred on each object, or a regular grid of crops"
    ),
    negatives: int = typer.Option(0, help="object-free 'negative control' crops per image"),
    mask_format: str = typer.Option(
        "binary", help="crop masks: binary (0/1), instances (ids 1..n per crop), centre (only the centred object)"
    ),
    objects: str = typer.Option(
        "auto", help="objects are the mask's ids, or its connected components (auto: components of 0/1 masks)"
    ),
    seed: int = typer.Option(0, help="random seed for the negative crops"),
) -> None:
    """Cut training subimages from large fields: a dataset in the pairs layout, ready for 'bioseg check'."""
    from bioseg.workflows.crop import crop_dataset

    result = crop_dataset(
        images,
        masks,
        output,
        size=parse_size(size),
        mode="object" if per_object else "grid",
        negatives=negatives,
        seed=seed,
        mask_format=mask_format,
        objects_from=objects,
    )
    kinds = ", ".join(f"{result.count(k)} {k}" for k in ("object", "grid", "negative") if result.count(k))
    typer.echo(f"wrote {len(result.rows)} crops ({kinds or 'none'}) to {output}; list: {result.csv_path}")
    if result.short:
        typer.echo(
            f"found {result.count('negative')} of {result.negatives_asked} negative crops: too little "
            f"object-free space in {len(result.short)} image(s) ({'; '.join(result.short[:3])}"
            f"{' …' if len(result.short) > 3 else ''}); try a smaller --size"
        )
    typer.echo(f"next: bioseg check {output}")


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
