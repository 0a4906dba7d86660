"""``bioseg federated``: train one model across sites that keep their images (Flower).

Every site is a Flower ``ClientApp`` node that trains the global weights on its own images for some
local epochs and scores them on its own validation images; the ``ServerApp`` averages the weights
each round (FedAvg weighted by the sites' training images, or FedProx) and never sees an image. Here
the nodes run on this machine under Flower's simulation runtime (one Ray actor per node); the same
apps run on separate machines under a SuperLink and SuperNodes (see the README).

Sites whose data disagree are refused before any round (:mod:`.federated_sites`). The result is an
ordinary run folder: ``model/`` (the final global weights), ``config.yaml``, ``metrics.csv`` (one row
per round: each site's and the global validation scores, each site's training loss), ``charts/`` and
``federated.json`` (the sites, the strategy, the rounds).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bioseg import config as config_mod
from bioseg.config import as_experiment
from bioseg.errors import BiosegError
from bioseg.io.folders import check_output_folder
from bioseg.nn.bundle import build_network, save_model
from bioseg.reports.history import write_metrics_csv
from bioseg.workflows.federated_sites import SiteProfile, check_sites, site_profile

STRATEGIES = ("fedavg", "fedprox")
log = logging.getLogger("bioseg")


def quiet_flower() -> None:
    """Flower's telemetry and update check, and Ray's usage statistics, off: nothing reaches the
    network. Flower reads these when it is imported, so this runs first."""
    os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
    os.environ["FLWR_DISABLE_UPDATE_CHECK"] = "1"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"] = "0"  # no GPUs asked for: leave the device variables alone


def require_flower() -> None:
    missing = [m for m in ("flwr", "ray") if importlib.util.find_spec(m) is None]
    if missing:
        raise BiosegError(f"federated training needs {', '.join(missing)}: install the private extra, "
                          "pip install 'bioseg[private]'")  # fmt: skip


@dataclass
class FederatedResult:
    run_dir: Path
    rows: list[dict[str, float]]  # one per round, as in metrics.csv
    sites: list[SiteProfile]
    summary: list[str] = field(default_factory=list)


@dataclass
class _Rounds:
    """What the server learns each round: the sites' scores, and (``keep_updates``) their weights."""

    sites: list[str]
    updates_dir: Path | None
    rows: dict[int, dict[str, float]] = field(default_factory=dict)

    def row(self, server_round: int) -> dict[str, float]:
        return self.rows.setdefault(server_round, {"epoch": float(server_round)})

    def check(self, replies: list[Any], what: str) -> None:
        failed = [m for m in replies if m.has_error()]
        if failed or len(replies) < len(self.sites):
            reason = failed[0].error.reason.strip().splitlines()[-1] if failed else "no reply"
            raise BiosegError(f"a site failed to {what}: {reason}")

    def trained(self, server_round: int, replies: list[Any]) -> None:
        row = self.row(server_round)
        for m in replies:
            metrics = m.content["metrics"]
            name = self.sites[int(metrics["site-index"])]
            row[f"train/{name}/loss"] = float(metrics["train-loss"])
            if self.updates_dir is not None:
                from safetensors.torch import save_file

                folder = self.updates_dir / f"round_{server_round:03d}"
                folder.mkdir(parents=True, exist_ok=True)
                state = m.content["arrays"].to_torch_state_dict()
                save_file({k: v.contiguous() for k, v in state.items()}, str(folder / f"{name}.safetensors"),
                          metadata={"num-examples": str(int(metrics["num-examples"]))})  # fmt: skip

    def evaluated(self, server_round: int, replies: list[Any]) -> None:
        row, total, weighted = self.row(server_round), 0, {}
        for m in replies:
            metrics = dict(m.content["metrics"])
            name = self.sites[int(metrics.pop("site-index"))]
            n = int(metrics.pop("num-examples"))
            total += n
            for key, value in metrics.items():
                row[f"val/{name}/{key}"] = float(value)
                weighted[key] = weighted.get(key, 0.0) + n * float(value)
        for key, value in weighted.items():  # the global score: the sites' scores weighted by their images
            row[f"val/{key}"] = value / max(total, 1)


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
) -> FederatedResult:
    """Train ``config``'s model across ``sites`` (name → data folder, each split with ``bioseg split``)
    for ``rounds`` rounds of ``local_epochs`` epochs at every site. ``keep_updates``: write the weights
    each site sent, and the global weights, per round under ``updates/`` (an audit trail)."""
    strategy = strategy.lower()
    if strategy not in STRATEGIES:
        raise BiosegError(f"--strategy '{strategy}' is unknown; choose {' or '.join(STRATEGIES)}")
    if rounds < 1 or local_epochs < 1:
        raise BiosegError(f"--rounds ({rounds}) and --local-epochs ({local_epochs}) must be 1 or more")
    cfg = as_experiment(config, overrides)
    if cfg.train.privacy is not None:
        raise BiosegError("train.privacy is not available in federated training yet: each round would spend "
                          "epsilon anew at every site; remove train.privacy")  # fmt: skip
    quiet_flower()
    require_flower()
    run_dir = check_output_folder(cfg.run_dir, "run folder")
    if (run_dir / "model").exists():
        raise BiosegError(f"{run_dir} already holds a run; pick another name (--set name=NEW)")
    profiles = [site_profile(cfg, name, root) for name, root in sites.items()]  # each site checks its own data
    check_sites(profiles)
    torch.manual_seed(cfg.seed)
    net = build_network(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_mod.dump(cfg, run_dir / "config.yaml")
    record = _Rounds([p.name for p in profiles], run_dir / "updates" if keep_updates else None)
    final = _simulate(cfg, profiles, net.state_dict(), record, rounds, local_epochs, strategy, proximal_mu, run_dir)
    net.load_state_dict(final)
    save_model(net, cfg, run_dir)
    rows = [record.rows[r] for r in sorted(record.rows)]
    write_metrics_csv(run_dir / "metrics.csv", rows)
    from bioseg.reports.charts import plot_training_curves

    plot_training_curves(rows, run_dir / "charts")
    about = {
        "strategy": strategy, "proximal_mu": proximal_mu if strategy == "fedprox" else None, "rounds": rounds,
        "local_epochs": local_epochs, "weighting": "training images", "sites": [p.to_dict() for p in profiles],
    }  # fmt: skip
    (run_dir / "federated.json").write_text(json.dumps(about, indent=2))
    last = rows[-1] if rows else {}
    summary = [f"round {rounds}: global val/dice_mean {last.get('val/dice_mean', float('nan')):.4f}"] + [
        f"  site {p.name}: val/dice_mean {last.get(f'val/{p.name}/dice_mean', float('nan')):.4f} "
        f"({p.train} training, {p.val} validation images)" for p in profiles
    ]  # fmt: skip
    return FederatedResult(run_dir, rows, profiles, summary)


def _simulate(cfg, profiles, initial, record, rounds, local_epochs, strategy, proximal_mu, run_dir):
    """Run the ServerApp and one ClientApp node per site under Flower's simulation runtime; returns
    the final global state dict."""
    from flwr.app import ArrayRecord, ConfigRecord
    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation

    experiment = config_mod.to_dict(cfg)
    sites = [(p.name, str(p.root)) for p in profiles]
    server, out = ServerApp(), {}

    @server.main()
    def main(grid, context) -> None:
        s = _strategy(strategy, len(sites), proximal_mu, record)
        result = s.start(grid=grid, initial_arrays=ArrayRecord(torch_state_dict=initial), num_rounds=rounds,
                         train_config=ConfigRecord({"local-epochs": local_epochs}))  # fmt: skip
        out["state"] = result.arrays.to_torch_state_dict()

    flwr_log = logging.getLogger("flwr")
    level = flwr_log.level
    flwr_log.setLevel(logging.ERROR)  # Flower's round-by-round INFO lines; bioseg says what matters
    try:
        run_simulation(
            server_app=server, client_app=client_app(experiment, sites, str(run_dir)), num_supernodes=len(sites),
            backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                            "init_args": {"num_cpus": min(len(sites), os.cpu_count() or 1), "log_to_driver": False}},
        )  # fmt: skip
    finally:
        flwr_log.setLevel(level)
    if "state" not in out:
        raise BiosegError("the federated run ended without a global model; see the messages above")
    return {k: torch.as_tensor(v).to(initial[k].dtype) for k, v in out["state"].items()}


def _strategy(name: str, n: int, proximal_mu: float, record: _Rounds):
    """Flower's FedAvg or FedProx that also records each round for metrics.csv and refuses a round in
    which a site failed (an average without it would quietly drop that site)."""
    from flwr.serverapp.strategy import FedAvg, FedProx

    base = FedProx if name == "fedprox" else FedAvg

    class Recorded(base):
        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            record.check(replies, "train")
            record.trained(server_round, replies)
            arrays, metrics = super().aggregate_train(server_round, replies)
            if record.updates_dir is not None and arrays is not None:
                from safetensors.torch import save_file

                state = {k: v.contiguous() for k, v in arrays.to_torch_state_dict().items()}
                save_file(state, str(record.updates_dir / f"round_{server_round:03d}" / "global.safetensors"))
            return arrays, metrics

        def aggregate_evaluate(self, server_round, replies):
            replies = list(replies)
            record.check(replies, "validate")
            record.evaluated(server_round, replies)
            return super().aggregate_evaluate(server_round, replies)

    options: dict[str, Any] = {"min_available_nodes": n, "min_train_nodes": n, "min_evaluate_nodes": n}
    if name == "fedprox":
        options["proximal_mu"] = proximal_mu
    return Recorded(**options)


def client_app(experiment: dict[str, Any], sites: list[tuple[str, str]], run_dir: str):
    """The ClientApp of every site: node ``partition-id`` i is site i. Its images are read in the
    node's own process, once, and stay there."""
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app, opened = ClientApp(), {}

    def site_of(context):
        i = int(context.node_config["partition-id"])
        if i not in opened:
            from bioseg.workflows.federated_local import Site

            name, root = sites[i]
            opened[i] = Site.open(name, experiment, Path(root), Path(run_dir))
        return i, opened[i]

    @app.train()
    def train(msg, context):
        from bioseg.workflows.federated_local import local_fit

        i, site = site_of(context)
        config = msg.content["config"]
        state, n, loss = local_fit(
            site, msg.content["arrays"].to_torch_state_dict(), epochs=int(config["local-epochs"]),
            server_round=int(config["server-round"]), proximal_mu=float(config.get("proximal-mu", 0.0)),
        )  # fmt: skip
        metrics = MetricRecord({"num-examples": n, "site-index": i, "train-loss": loss})
        return Message(RecordDict({"arrays": ArrayRecord(torch_state_dict=state), "metrics": metrics}), reply_to=msg)

    @app.evaluate()
    def evaluate(msg, context):
        from bioseg.workflows.federated_local import local_validation

        i, site = site_of(context)
        scores, n = local_validation(site, msg.content["arrays"].to_torch_state_dict())
        metrics = MetricRecord({**scores, "num-examples": n, "site-index": i})
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    return app
