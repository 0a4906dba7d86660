"""``bioseg export``: a trained run as ONNX, TorchScript and a bioimage.io package."""

from __future__ import annotations

from pathlib import Path

import typer

from bioseg.cli.app import app


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="run folder (…/fold_0) or its model/ folder"),
    output: Path = typer.Option(..., "--output", "-o", help="output folder (written only when complete)"),
    format: str = typer.Option("onnx,torchscript,bioimageio", "--format", "-f",
                               help="comma-separated: onnx, torchscript, bioimageio"),  # fmt: skip
    validate: bool = typer.Option(False, help="check every format against PyTorch (and bioimage.io's own tests)"),
    benchmark: bool = typer.Option(False, help="tiles per second for PyTorch, TorchScript and ONNX Runtime"),
    force: bool = typer.Option(False, help="replace OUTPUT if it exists"),
) -> None:
    """Export a trained model: model.onnx, model.torchscript.pt, bioimageio/ and metadata.json."""
    from bioseg.workflows.export import export_run

    result = export_run(run_dir, output, format, validate=validate, benchmark=benchmark, force=force)
    for name, path in result.files.items():
        typer.echo(f"{name}: {path}")
    for line in result.checks:
        typer.echo(f"passed: {line}")
    if result.benchmark:
        typer.echo((result.out_dir / "benchmark.md").read_text().rstrip())
    typer.echo(f"wrote {result.out_dir}")
