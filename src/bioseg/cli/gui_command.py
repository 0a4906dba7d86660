"""``bioseg gui``: serve the web page for prediction (the ``bioseg[gui]`` extra)."""

from __future__ import annotations

from pathlib import Path

import typer

from bioseg.cli.app import app


@app.command()
def gui(
    runs: list[Path] = typer.Argument(None, help="run folders, or folders that hold runs [default: runs]"),
    host: str = typer.Option("127.0.0.1", help="address to listen on; another than 127.0.0.1 opens it to the network"),
    port: int = typer.Option(8000, help="port to listen on"),
    max_upload_mb: float = typer.Option(200.0, help="largest image file accepted, in MB"),
) -> None:
    """Serve a page to choose a trained run, upload images, adjust the settings and download the results."""
    from bioseg.gui.app import serve

    serve(runs or [Path("runs")], host=host, port=port, max_upload_mb=max_upload_mb, announce=typer.echo)
