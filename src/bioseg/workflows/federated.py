"""``bioseg federated``: train one model across sites that keep their images (Flower).

Every site is a Flower ``ClientApp`` node that trains the global weights on its own images for some
local epochs and scores them on its own validation images; the ``ServerApp`` averages the weights
each round (FedAvg weighted by the sites' training images, or FedProx) and never sees an image. Here
the nodes run on this machine under Flower's simulation runtime (one Ray actor per node); the same
apps run on separate machines under a SuperLink and SuperNodes (:mod:`.federated_app`).

Sites whose data disagree are refused before any round (:mod:`.federated_sites`): here at once, from
the folders, and again by the ServerApp from the profiles the nodes send, as in a deployment. The
result is an ordinary run folder (:func:`.federated_server.serve`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from bioseg import config as config_mod
from bioseg.config import as_experiment
from bioseg.errors import BiosegError
from bioseg.workflows.federated_client import Where, client_app
from bioseg.workflows.federated_dp import SiteDP
from bioseg.workflows.federated_server import STRATEGIES, FederatedResult, Plan, serve
from bioseg.workflows.federated_sites import check_sites, site_profile

__all__ = ["STRATEGIES", "FederatedResult", "federated", "quiet_flower", "require_flower"]
log = logging.getLogger("bioseg")


def quiet_flower() -> None:
    """Flower's telemetry and update check, and Ray's usage statistics, off: nothing reaches the
    network. Flower reads these when it is imported, so this runs first."""
    os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
    os.environ["FLWR_DISABLE_UPDATE_CHECK"] = "1"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"] = "0"  # no GPUs asked for: leave the device variables alone


def require_flower(modules: tuple[str, ...] = ("flwr", "ray")) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise BiosegError(f"federated training needs {', '.join(missing)}: install the private extra, "
                          "pip install 'bioseg[private]'")  # fmt: skip


def make_plan(
    config: Any,
    *,
    rounds: int,
    sites: int,
    local_epochs: int = 1,
    strategy: str = "fedavg",
    proximal_mu: float = 0.01,
    overrides: list[str] | None = None,
    keep_updates: bool = False,
    dp: SiteDP | None = None,
) -> Plan:
    """The settings of a federated run, checked; the run folder is the experiment's, made absolute."""
    cfg = as_experiment(config, overrides)
    plan = Plan(config_mod.to_dict(cfg), str(Path(cfg.run_dir).resolve()), rounds, local_epochs, strategy,
                proximal_mu, keep_updates, dp, sites)  # fmt: skip
    return plan.checked()


def federated(
    config: Any,
    sites: dict[str, Path],
    *,
    rounds: int,
    local_epochs: int = 1,
    strategy: str = "fedavg",
    proximal_mu: float = 0.01,
    overrides: list[str] | None = None,
    keep_updates: bool = False,
    dp: SiteDP | None = None,
) -> FederatedResult:
    """Train ``config``'s model across ``sites`` (name → data folder, each split with ``bioseg split``)
    for ``rounds`` rounds of ``local_epochs`` epochs at every site. ``keep_updates``: write the weights
    each site sent, and the global weights, per round under ``updates/`` (an audit trail). ``dp``:
    site-level differential privacy (:mod:`.federated_dp`)."""
    plan = make_plan(config, rounds=rounds, sites=len(sites), local_epochs=local_epochs, strategy=strategy,
                     proximal_mu=proximal_mu, overrides=overrides, keep_updates=keep_updates, dp=dp)  # fmt: skip
    quiet_flower()
    require_flower()
    if (Path(plan.run_dir) / "model").exists():
        raise BiosegError(f"{plan.run_dir} already holds a run; pick another name (--set name=NEW)")
    cfg = config_mod.from_dict(plan.experiment)
    check_sites([site_profile(cfg, name, root) for name, root in sites.items()])  # at once, before Ray starts
    return _simulate(plan, list(sites.items()))


def _simulate(plan: Plan, sites: list[tuple[str, Path]]) -> FederatedResult:
    """Run the ServerApp and one ClientApp node per site under Flower's simulation runtime; node
    ``partition-id`` i is site i."""
    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation

    server, out = ServerApp(), {}

    @server.main()
    def main(grid, context) -> None:
        try:
            out["result"] = serve(grid, plan)
        except BiosegError as err:  # raised again below, as one line
            out["error"] = err

    def locate(context) -> Where:
        i = int(context.node_config["partition-id"])
        name, root = sites[i]
        return Where(plan.experiment, name, Path(root), Path(plan.run_dir), order=i)

    flwr_log = logging.getLogger("flwr")
    level = flwr_log.level
    flwr_log.setLevel(logging.ERROR)  # Flower's round-by-round INFO lines; bioseg says what matters
    try:
        run_simulation(
            server_app=server, client_app=client_app(locate), num_supernodes=len(sites),
            backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                            "init_args": {"num_cpus": min(len(sites), os.cpu_count() or 1), "log_to_driver": False}},
        )  # fmt: skip
    finally:
        flwr_log.setLevel(level)
    if "error" in out:
        raise out["error"]
    if "result" not in out:
        raise BiosegError("the federated run ended without a global model; see the messages above")
    return out["result"]
