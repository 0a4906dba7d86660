"""``bioseg federated``: one model trained across sites that keep their images (Flower);
``bioseg federated-app``: the same as a Flower App, for a SuperLink and SuperNodes."""

from __future__ import annotations

from pathlib import Path

import typer

from bioseg.cli.app import app

_DP_NOISE = typer.Option(None, help="site-level privacy: Gaussian noise std / clipping norm, added by the server "
                         "to the average (with --dp-clipping-norm; 0 clips without noise)")  # fmt: skip
_DP_CLIP = typer.Option(None, help="site-level privacy: each site's weight update is clipped to this L2 norm")
_DP_DELTA = typer.Option(1e-5, help="site-level privacy: the delta of (epsilon, delta)")
_DP_TARGET = typer.Option(None, help="site-level privacy: stop before a round would spend more epsilon")


def _site_dp(noise: float | None, clip: float | None, delta: float, target: float | None):
    from bioseg.errors import BiosegError
    from bioseg.workflows.federated_dp import SiteDP

    if noise is None and clip is None:
        if target is not None:
            raise BiosegError("--dp-target-epsilon needs --dp-noise-multiplier and --dp-clipping-norm")
        return None
    if noise is None or clip is None:
        raise BiosegError("site-level privacy needs both --dp-noise-multiplier and --dp-clipping-norm")
    return SiteDP(noise, clip, delta, target)


@app.command()
def federated(
    config: Path = typer.Argument(..., help="experiment YAML (data.root is replaced by each site's folder)"),
    site: list[str] = typer.Option(..., "--site", help="NAME=DATA_DIR, once per site (two or more)"),
    rounds: int = typer.Option(..., help="federated rounds"),
    local_epochs: int = typer.Option(1, help="epochs each site trains per round"),
    strategy: str = typer.Option("fedavg", help="fedavg (weighted by training images) or fedprox"),
    proximal_mu: float = typer.Option(0.01, help="fedprox: weight of the proximal term"),
    keep_updates: bool = typer.Option(False, help="write each site's and the global weights per round (updates/)"),
    dp_noise_multiplier: float | None = _DP_NOISE,
    dp_clipping_norm: float | None = _DP_CLIP,
    dp_delta: float = _DP_DELTA,
    dp_target_epsilon: float | None = _DP_TARGET,
    overrides: list[str] = typer.Option([], "--set", help="override a key, e.g. --set train.epochs=5"),
) -> None:
    """Federated training: each site trains on its own data, only weights travel; writes a run folder."""
    from bioseg.workflows.federated import federated as run_federated
    from bioseg.workflows.federated_sites import parse_sites

    sites = parse_sites(site)
    dp = _site_dp(dp_noise_multiplier, dp_clipping_norm, dp_delta, dp_target_epsilon)
    result = run_federated(config, sites, rounds=rounds, local_epochs=local_epochs, strategy=strategy,
                           proximal_mu=proximal_mu, overrides=overrides, keep_updates=keep_updates, dp=dp)  # fmt: skip
    for line in result.summary:
        typer.echo(line)
    typer.echo(f"run folder: {result.run_dir}")
    typer.echo(f"charts: {result.run_dir / 'charts'}")


@app.command("federated-app")
def federated_app(
    config: Path = typer.Argument(..., help="experiment YAML (data.root is replaced by each site's folder)"),
    out: Path = typer.Option(..., "-o", "--out", help="folder to write the Flower App in (its pyproject.toml)"),
    sites: int = typer.Option(..., help="how many sites (SuperNodes) the server waits for"),
    rounds: int = typer.Option(..., help="federated rounds"),
    local_epochs: int = typer.Option(1, help="epochs each site trains per round"),
    strategy: str = typer.Option("fedavg", help="fedavg (weighted by training images) or fedprox"),
    proximal_mu: float = typer.Option(0.01, help="fedprox: weight of the proximal term"),
    keep_updates: bool = typer.Option(False, help="write each site's and the global weights per round (updates/)"),
    dp_noise_multiplier: float | None = _DP_NOISE,
    dp_clipping_norm: float | None = _DP_CLIP,
    dp_delta: float = _DP_DELTA,
    dp_target_epsilon: float | None = _DP_TARGET,
    overrides: list[str] = typer.Option([], "--set", help="override a key, e.g. --set train.epochs=5"),
) -> None:
    """Write a Flower App running bioseg's federated training under a SuperLink and SuperNodes."""
    from bioseg.workflows.federated import make_plan, quiet_flower, require_flower
    from bioseg.workflows.federated_app import write_app

    quiet_flower()
    require_flower(("flwr",))
    dp = _site_dp(dp_noise_multiplier, dp_clipping_norm, dp_delta, dp_target_epsilon)
    plan = make_plan(config, rounds=rounds, sites=sites, local_epochs=local_epochs, strategy=strategy,
                     proximal_mu=proximal_mu, overrides=overrides, keep_updates=keep_updates, dp=dp)  # fmt: skip
    path = write_app(plan, out)
    typer.echo(f"Flower App: {path}")
    typer.echo(f"the server will write the run folder {plan.run_dir} (change it: --run-config 'run-dir=\"...\"')")
    typer.echo(f"run it: flwr run {path.parent} CONNECTION   (a [superlink.CONNECTION] in ~/.flwr/config.toml)")
