"""``bioseg demo``: the whole job on built-in synthetic data.

Heavy modules are imported inside the commands so that ``bioseg --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from bioseg.cli.app import app
from bioseg.errors import BiosegError


@app.command()
def demo(
    output: Path = typer.Option(Path("bioseg-demo"), "--output", "-o", help="folder for data, run and predictions"),
    three_d: bool = typer.Option(False, "--3d", help="3D membrane-stained cells → boundaries → instances"),
    multitask: bool = typer.Option(False, "--multitask", help="insect wings: outline, veins, spots, domains"),
    progress: bool = typer.Option(True, help="show progress bars"),
) -> None:
    """The whole job on built-in synthetic data: check → split → train → predict → evaluate."""
    from bioseg.demos.runner import launch

    if three_d and multitask:
        raise BiosegError("choose one of --3d and --multitask")
    launch("3d" if three_d else "multitask" if multitask else "cells", output, log=typer.echo, progress=progress)
