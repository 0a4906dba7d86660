"""Commands that train: train, lr-find, augment-preview, compare, sweep.

Heavy modules are imported inside the commands so that ``bioseg --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from bioseg.cli.app import app
from bioseg.errors import BiosegError


@app.command()
def train(
    config: Path = typer.Argument(..., help="experiment YAML"),
    fold: str | None = typer.Option(
        None, help="fold to train, or 'all': every fold of the split in turn, finished ones kept (default: data.fold)"
    ),
    overrides: list[str] = typer.Option([], "--set", help="override a key, e.g. --set train.epochs=5"),
    resume: bool = typer.Option(False, help="continue from checkpoints/last.ckpt"),
    progress: bool = typer.Option(True, help="show the progress bar (a line per epoch without it, or when redirected)"),
) -> None:
    """Train a model; writes runs/<name>/fold_<k>/ (config, model/, checkpoints/, metrics.csv, charts/)."""
    from bioseg.engine.trainer import train as run_training

    progress = progress and sys.stderr.isatty()  # a bar in a log file is noise: lines per epoch instead
    if fold is not None and fold.strip().lower() == "all":
        if resume:
            raise BiosegError("--fold all continues interrupted folds by itself; drop --resume")
        _train_all(config, overrides, progress)
        return
    result = run_training(config, fold=_fold_number(fold), resume=resume, overrides=overrides, progress=progress)
    _say_trained(result)


def _fold_number(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise BiosegError(f"--fold '{text}' is not a fold; give a fold number (0, 1, …) or 'all'") from None


def _train_all(config: Path, overrides: list[str], progress: bool) -> None:
    from bioseg.engine.folds import train_folds

    def said(outcome) -> None:
        if outcome.result is None:
            typer.echo(f"fold {outcome.fold}: finished before, kept as it is ({outcome.run_dir})")
            return
        typer.echo(f"fold {outcome.fold}: {outcome.status}")
        _say_trained(outcome.result)

    outcomes = train_folds(config, overrides=overrides, progress=progress, on_fold=said)
    experiment = outcomes[0].run_dir.parent
    typer.echo(f"{len(outcomes)} folds in {experiment}; 'bioseg predict {experiment} …' averages them")


def _say_trained(result) -> None:
    if result.global_rank != 0:  # DDP: the other processes ran the same command; rank 0 speaks
        return
    if result.init_report:
        typer.echo(f"initialised from model.init_from: {result.init_report}")
    typer.echo(f"run folder: {result.run_dir}")
    for line in result.summary:
        typer.echo(line)
    typer.echo(f"charts: {result.run_dir / 'charts'}")


@app.command("lr-find")
def lr_find(
    config: Path = typer.Argument(..., help="experiment YAML"),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="chart to write (default: <config stem>_lr_find.png beside the config)"
    ),
    min_lr: float = typer.Option(1e-6, help="lowest rate tried"),
    max_lr: float = typer.Option(1.0, help="highest rate tried"),
    steps: int = typer.Option(100, help="training steps, one rate each (exponentially spaced)"),
    fold: int | None = typer.Option(None, help="fold whose training images are used (default: data.fold)"),
    overrides: list[str] = typer.Option([], "--set", help="override a key, e.g. --set data.batch_size=4"),
    apply: bool = typer.Option(False, "--apply", help="write the suggested rate into optim.lr of the config"),
    progress: bool = typer.Option(True, help="show the progress bar"),
) -> None:
    """Learning-rate range test: the loss-vs-rate chart and a suggested optim.lr."""
    from bioseg.workflows.lr_find import apply_lr, find_lr

    out = output or config.with_name(f"{config.stem}_lr_find.png")
    result = find_lr(
        config, overrides, out=out, min_lr=min_lr, max_lr=max_lr, steps=steps, fold=fold, progress=progress
    )
    typer.echo(f"chart: {result.plot_path} (points: {result.csv_path})")
    if result.suggestion is None:
        raise BiosegError(
            f"no learning rate to suggest: the loss did not fall over {len(result.lrs)} steps "
            f"from {min_lr:g} to {max_lr:g}; see {result.plot_path}, or try more --steps or a wider range"
        )
    typer.echo(f"suggested learning rate: {result.suggestion:.3g} (config optim.lr: {result.current_lr:g})")
    if apply:
        written = apply_lr(config, result.suggestion)
        typer.echo(f"wrote optim.lr: {written:g} to {config}")


@app.command("augment-preview")
def augment_preview(
    config: Path = typer.Argument(..., help="experiment YAML"),
    n: int = typer.Option(16, "-n", help="number of augmented samples"),
    output: Path = typer.Option(Path("augment_preview.png"), "--output", "-o", help="PNG to write"),
    seed: int | None = typer.Option(None, help="random seed (default: the config's)"),
    cols: int | None = typer.Option(None, help="tiles per row (default: about square)"),
    head: str | None = typer.Option(None, help="head whose target is outlined (default: the first)"),
    overrides: list[str] = typer.Option([], "--set", help="override a key, e.g. --set augment.0.p=1"),
) -> None:
    """A grid of training patches after the config's augmentations, with their masks outlined."""
    from bioseg.workflows.augment_preview import augment_preview as make_preview

    result = make_preview(config, n, output, overrides=overrides, seed=seed, cols=cols, head=head)
    typer.echo(f"wrote {result.path}: {result.n} augmented patches, {result.rows}×{result.cols} grid")


@app.command()
def compare(
    paths: list[Path] = typer.Argument(..., help="run folders (runs/<name>/fold_0, or runs/<name> for all folds)"),
    output: Path = typer.Option(Path("comparison"), "--output", "-o", help="folder for the table and charts"),
    train: bool = typer.Option(False, "--train", help="PATHS are experiment YAMLs: train them, then compare"),
    folds: list[int] = typer.Option([], "--fold", help="with --train: folds to train (repeat; default data.fold)"),
    overrides: list[str] = typer.Option([], "--set", help="with --train: override a key in every config"),
    split: str = typer.Option("test", help="split the runs are scored on"),
    any_split: bool = typer.Option(False, help="compare runs even when their test images differ"),
    progress: bool = typer.Option(True, help="show progress bars"),
) -> None:
    """Compare finished runs on one test split: comparison.csv/.md, test_scores.png, validation_curves.png."""
    from bioseg.workflows.compare import compare_runs, train_and_compare

    if train:
        if split != "test" or any_split:
            raise BiosegError("--train scores the runs on the shared test split; drop --split and --any-split")
        result = train_and_compare(paths, output, overrides=overrides, folds=folds or None, progress=progress)
    else:
        if overrides or folds:
            raise BiosegError("--set and --fold apply to --train only; finished runs are compared as they are")
        result = compare_runs(paths, output, split=split, any_split=any_split, progress=progress)
    for s in result.summary:
        spread = f" ± {s['dice_mean_std']:.4f}" if s["n"] > 1 else ""
        typer.echo(f"{s['experiment']}: Dice {s['dice_mean_mean']:.4f}{spread} ({s['n']} run(s))")
    _say_means(result.rows)
    typer.echo(f"wrote {', '.join(p.name for p in result.paths.values())} to {result.out_dir}")


@app.command()
def sweep(
    config: Path = typer.Argument(..., help="experiment YAML"),
    sweep_set: str = typer.Option(
        ..., "--set", help="the key to sweep and its values, e.g. --set 'loss.0.class_weights=[[1,0.1],[1,10]]'"
    ),
    fixed: list[str] = typer.Option([], "--fixed", help="override applied to every run, e.g. --fixed train.epochs=5"),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="folder for sweep.csv/.json and the chart (default <output_dir>/<name>-<key>-sweep)",
    ),
    fold: int | None = typer.Option(None, help="fold to train (default: data.fold)"),
    reuse: bool = typer.Option(False, help="evaluate runs that a previous sweep finished instead of training them"),
    progress: bool = typer.Option(True, help="show progress bars"),
) -> None:
    """Train one run per value of a config key; chart per-class test accuracy against the value."""
    from bioseg.workflows.sweep import parse_sweep
    from bioseg.workflows.sweep import sweep as run_sweep

    key, values = parse_sweep(sweep_set)
    result = run_sweep(config, key, values, output, overrides=fixed, fold=fold, reuse=reuse, progress=progress)
    for row in result.rows:
        recalls = ", ".join(f"{k.removeprefix('recall/')} {v:.3f}" for k, v in row.items() if k.startswith("recall/"))
        typer.echo(f"{key}={row['value']}: Dice {row['dice_mean']:.4f}; accuracy per class: {recalls}")
    _say_means(result.rows)
    typer.echo(f"wrote {', '.join(p.name for p in result.paths.values())} to {result.out_dir}")


def _say_means(rows: list[dict]) -> None:
    """What the Dice printed above averages, once when every run agrees, else per run."""
    means = list(dict.fromkeys(r.get("dice_mean_over") or "" for r in rows))
    if means == [""]:
        return
    if len(means) == 1:
        typer.echo(f"Dice is the mean {means[0]}")
        return
    for r in rows:
        over = r.get("dice_mean_over") or "(not recorded)"
        typer.echo(f"{r.get('experiment', r.get('value'))}: Dice is the mean {over}")
