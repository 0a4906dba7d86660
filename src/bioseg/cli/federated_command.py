"""``bioseg federated``: one model trained across sites that keep their images (Flower)."""

from __future__ import annotations

from pathlib import Path

import typer

from bioseg.cli.app import app


@app.command()
def federated(
    config: Path = typer.Argument(..., help="experiment YAML (data.root is replaced by each site's folder)"),
    site: list[str] = typer.Option(..., "--site", help="NAME=DATA_DIR, once per site (two or more)"),
    rounds: int = typer.Option(..., help="federated rounds"),
    local_epochs: int = typer.Option(1, help="epochs each site trains per round"),
    strategy: str = typer.Option("fedavg", help="fedavg (weighted by training images) or fedprox"),
    proximal_mu: float = typer.Option(0.01, help="fedprox: weight of the proximal term"),
    keep_updates: bool = typer.Option(False, help="write each site's and the global weights per round (updates/)"),
    overrides: list[str] = typer.Option([], "--set", help="override a key, e.g. --set train.epochs=5"),
) -> None:
    """Federated training: each site trains on its own data, only weights travel; writes a run folder."""
    from bioseg.workflows.federated import federated as run_federated
    from bioseg.workflows.federated_sites import parse_sites

    result = run_federated(config, parse_sites(site), rounds=rounds, local_epochs=local_epochs, strategy=strategy,
                           proximal_mu=proximal_mu, overrides=overrides, keep_updates=keep_updates)  # fmt: skip
    for line in result.summary:
        typer.echo(line)
    typer.echo(f"run folder: {result.run_dir}")
    typer.echo(f"charts: {result.run_dir / 'charts'}")
