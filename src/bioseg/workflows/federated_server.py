"""The ServerApp's work, the same under Flower's simulation runtime and under a SuperLink: ask every
node for its site's profile and refuse sites that disagree, run the rounds (FedAvg or FedProx, with
site-level privacy when asked), and write the final global model as an ordinary run folder.

Everything the server needs is a :class:`Plan`, which travels as Flower's run config (flat keys) in a
deployed Flower App.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from bioseg import config as config_mod
from bioseg.errors import BiosegError
from bioseg.io.folders import check_output_folder
from bioseg.nn.bundle import build_network, save_model
from bioseg.reports.history import write_metrics_csv
from bioseg.workflows.federated_client import profile_from_record
from bioseg.workflows.federated_dp import SITE_WEIGHT, SiteDP, dp_experiment, private_strategy
from bioseg.workflows.federated_sites import SiteProfile, check_sites

STRATEGIES = ("fedavg", "fedprox")
log = logging.getLogger("bioseg")


@dataclass
class FederatedResult:
    run_dir: Path
    rows: list[dict[str, float]]  # one per round, as in metrics.csv
    sites: list[SiteProfile]
    summary: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    """A federated run's settings: the experiment every site trains, the rounds, the strategy, where
    the server writes the run folder, and site-level privacy."""

    experiment: dict[str, Any]
    run_dir: str
    rounds: int
    local_epochs: int = 1
    strategy: str = "fedavg"
    proximal_mu: float = 0.01
    keep_updates: bool = False
    dp: SiteDP | None = None
    sites: int = 2  # the nodes the server waits for before the first round
    site_wait: float = 600.0  # seconds

    def checked(self) -> Plan:
        """The plan with its mistakes refused (one line each) and, with privacy, the network it needs."""
        strategy = self.strategy.lower()
        if strategy not in STRATEGIES:
            raise BiosegError(f"--strategy '{self.strategy}' is unknown; choose {' or '.join(STRATEGIES)}")
        if self.rounds < 1 or self.local_epochs < 1:
            raise BiosegError(f"--rounds ({self.rounds}) and --local-epochs ({self.local_epochs}) must be 1 or more")
        if self.sites < 2:
            raise BiosegError(f"federated training needs two sites or more; sites is {self.sites}")
        cfg = config_mod.from_dict(self.experiment)
        if cfg.train.privacy is not None:
            raise BiosegError("train.privacy (DP-SGD, one image as the unit) is not available in federated training: "
                              "each round would spend epsilon anew at every site; remove train.privacy and use "
                              "site-level privacy (--dp-noise-multiplier, --dp-clipping-norm)")  # fmt: skip
        if self.dp is not None:
            self.dp.rounds_within(self.rounds)  # refuses a target that not even one round fits
            cfg, said = dp_experiment(cfg)
            if said:
                log.info(said)
        return replace(self, strategy=strategy, experiment=config_mod.to_dict(cfg))

    def to_run_config(self) -> dict[str, Any]:
        """Flower's run config: flat keys, numbers, booleans and strings (0 stands for "none")."""
        dp = self.dp
        return {
            "experiment": json.dumps(self.experiment), "run-dir": self.run_dir, "rounds": self.rounds,
            "local-epochs": self.local_epochs, "strategy": self.strategy, "proximal-mu": self.proximal_mu,
            "keep-updates": self.keep_updates, "sites": self.sites, "site-wait": self.site_wait,
            "dp-noise-multiplier": dp.noise_multiplier if dp else 0.0,
            "dp-clipping-norm": dp.clipping_norm if dp else 0.0,
            "dp-delta": dp.delta if dp else 1e-5, "dp-target-epsilon": (dp.target_epsilon or 0.0) if dp else 0.0,
        }  # fmt: skip

    @classmethod
    def from_run_config(cls, rc: Any) -> Plan:
        """The plan of a deployed run (``--run-config`` overrides included); ``dp-clipping-norm`` 0: no privacy."""
        try:
            dp = None
            if float(rc.get("dp-clipping-norm", 0.0)) > 0:
                dp = SiteDP(float(rc["dp-noise-multiplier"]), float(rc["dp-clipping-norm"]), float(rc["dp-delta"]),
                            float(rc["dp-target-epsilon"]) or None)  # fmt: skip
            plan = cls(json.loads(str(rc["experiment"])), str(rc["run-dir"]), int(rc["rounds"]),
                       int(rc["local-epochs"]), str(rc["strategy"]), float(rc["proximal-mu"]), bool(rc["keep-updates"]),
                       dp, int(rc["sites"]), float(rc.get("site-wait", 600.0)))  # fmt: skip
        except (KeyError, ValueError) as err:
            raise BiosegError(f"the Flower App's run config is incomplete or invalid ({err}); write it again with "
                              "'bioseg federated-app'") from None  # fmt: skip
        return plan.checked()


def ask_profiles(grid: Any, expected: int, wait: float) -> tuple[dict[int, str], list[SiteProfile]]:
    """Wait for ``expected`` nodes, ask each for its site's profile (metadata, no image) and refuse
    sites that disagree: ``(node id → site name, profiles in the sites' order)``."""
    from flwr.app import ConfigRecord, Message, RecordDict

    deadline = time.monotonic() + wait
    while len(nodes := sorted(grid.get_node_ids())) < expected:
        if time.monotonic() > deadline:
            raise BiosegError(f"{len(nodes)} of {expected} sites connected within {wait:g} s; start a SuperNode "
                              "at every site (or lower the run config's sites)")  # fmt: skip
        time.sleep(0.5)
    asks = [Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=n, message_type="query") for n in nodes]
    replies = list(grid.send_and_receive(asks, timeout=wait))
    _check_replies(replies, len(nodes), "describe its data")
    found = sorted((profile_from_record(m.content["profile"]) + (m.metadata.src_node_id,) for m in replies),
                   key=lambda t: (t[1], t[0].name))  # fmt: skip
    names = [p.name for p, _, _ in found]
    if twice := sorted({n for n in names if names.count(n) > 1}):
        raise BiosegError(f"two nodes call themselves site '{twice[0]}'; give every SuperNode its own site name")
    profiles = [p for p, _, _ in found]
    check_sites(profiles)
    return {node: p.name for p, _, node in found}, profiles


def _check_replies(replies: list[Any], expected: int, what: str) -> None:
    """A round in which a site failed is refused: an average without it would quietly drop that site."""
    failed = [m for m in replies if m.has_error()]
    if failed or len(replies) < expected:
        reason = (failed[0].error.reason or "").strip().splitlines() if failed else []
        raise BiosegError(f"a site failed to {what}: {reason[-1] if reason else 'no reply'}")


@dataclass
class _Rounds:
    """What the server learns each round: the sites' scores, and (``keep_updates``) their weights."""

    sites: dict[int, str]  # node id → site name
    updates_dir: Path | None
    rows: dict[int, dict[str, float]] = field(default_factory=dict)

    def row(self, server_round: int) -> dict[str, float]:
        return self.rows.setdefault(server_round, {"epoch": float(server_round)})

    def check(self, replies: list[Any], what: str) -> None:
        _check_replies(replies, len(self.sites), what)

    def save(self, server_round: int, name: str, state: dict[str, torch.Tensor], **metadata: str) -> None:
        from safetensors.torch import save_file

        folder = self.updates_dir / f"round_{server_round:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: torch.as_tensor(v).contiguous() for k, v in state.items()}
        save_file(tensors, str(folder / f"{name}.safetensors"), metadata=metadata or None)

    def trained(self, server_round: int, replies: list[Any]) -> None:
        row = self.row(server_round)
        for m in replies:
            metrics, name = m.content["metrics"], self.sites[m.metadata.src_node_id]
            row[f"train/{name}/loss"] = float(metrics["train-loss"])
            if self.updates_dir is not None:
                state = m.content["arrays"].to_torch_state_dict()
                self.save(server_round, name, state, **{"num-examples": str(int(metrics["num-examples"]))})

    def released(self, server_round: int, arrays: Any) -> None:
        if self.updates_dir is not None:
            self.save(server_round, "global", arrays.to_torch_state_dict())

    def evaluated(self, server_round: int, replies: list[Any]) -> None:
        row, total, weighted = self.row(server_round), 0, {}
        for m in replies:
            metrics, name = dict(m.content["metrics"]), self.sites[m.metadata.src_node_id]
            n = int(metrics.pop("num-examples"))
            total += n
            for key, value in metrics.items():
                row[f"val/{name}/{key}"] = float(value)
                weighted[key] = weighted.get(key, 0.0) + n * float(value)
        for key, value in weighted.items():  # the global score: the sites' scores weighted by their images
            row[f"val/{key}"] = value / max(total, 1)


def _strategy(plan: Plan, record: _Rounds) -> Any:
    """Flower's FedAvg or FedProx, sending only to the profiled nodes, recording each round and refusing
    a round in which a site failed; wrapped by Flower's privacy strategy when asked."""
    from flwr.serverapp.strategy import FedAvg, FedProx

    base, n = (FedProx if plan.strategy == "fedprox" else FedAvg), len(record.sites)

    class Recorded(base):
        def configure_train(self, server_round, arrays, config, grid):
            return [m for m in super().configure_train(server_round, arrays, config, grid)
                    if m.metadata.dst_node_id in record.sites]  # fmt: skip

        def configure_evaluate(self, server_round, arrays, config, grid):
            return [m for m in super().configure_evaluate(server_round, arrays, config, grid)
                    if m.metadata.dst_node_id in record.sites]  # fmt: skip

        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            record.check(replies, "train")
            record.trained(server_round, replies)
            arrays, metrics = super().aggregate_train(server_round, replies)
            if plan.dp is None and arrays is not None:
                record.released(server_round, arrays)
            return arrays, metrics

        def aggregate_evaluate(self, server_round, replies):
            replies = list(replies)
            record.check(replies, "validate")
            record.evaluated(server_round, replies)  # the global scores, weighted by validation images
            return None

    options: dict[str, Any] = {"min_available_nodes": n, "min_train_nodes": n, "min_evaluate_nodes": n}
    if plan.strategy == "fedprox":
        options["proximal_mu"] = plan.proximal_mu
    if plan.dp is not None:  # the noise is calibrated to an unweighted mean: every site counts once
        options["weighted_by_key"] = SITE_WEIGHT
    inner = Recorded(**options)
    return inner if plan.dp is None else private_strategy(inner, plan.dp, n, record.check, record.released)


def serve(grid: Any, plan: Plan) -> FederatedResult:
    """The whole federated run on the server side; returns what it wrote."""
    from flwr.app import ArrayRecord, ConfigRecord

    cfg = config_mod.from_dict(plan.experiment)
    run_dir = check_output_folder(Path(plan.run_dir), "run folder")
    if (run_dir / "model").exists():
        raise BiosegError(f"{run_dir} already holds a run; pick another name (--set name=NEW)")
    nodes, profiles = ask_profiles(grid, plan.sites, plan.site_wait)
    rounds = plan.dp.rounds_within(plan.rounds) if plan.dp else plan.rounds
    torch.manual_seed(cfg.seed)
    net = build_network(cfg)
    initial = net.state_dict()
    run_dir.mkdir(parents=True, exist_ok=True)
    config_mod.dump(cfg, run_dir / "config.yaml")
    record = _Rounds(nodes, run_dir / "updates" if plan.keep_updates else None)
    record.released(0, ArrayRecord(torch_state_dict=initial))
    result = _strategy(plan, record).start(
        grid=grid, initial_arrays=ArrayRecord(torch_state_dict=initial), num_rounds=rounds,
        train_config=ConfigRecord({"local-epochs": plan.local_epochs}),
    )  # fmt: skip
    final = result.arrays.to_torch_state_dict()
    net.load_state_dict({k: torch.as_tensor(v).to(initial[k].dtype) for k, v in final.items()})
    save_model(net, cfg, run_dir)
    rows = [record.rows[r] for r in sorted(record.rows)]
    if plan.dp is not None:
        for row in rows:
            row["privacy/epsilon"] = plan.dp.epsilon(int(row["epoch"]))
    write_metrics_csv(run_dir / "metrics.csv", rows)
    from bioseg.reports.charts import plot_training_curves

    plot_training_curves(rows, run_dir / "charts")
    stopped = rounds < plan.rounds
    about = {
        "strategy": plan.strategy, "proximal_mu": plan.proximal_mu if plan.strategy == "fedprox" else None,
        "rounds": rounds, "rounds_planned": plan.rounds, "local_epochs": plan.local_epochs,
        "weighting": "training images" if plan.dp is None else "one per site (site-level privacy)",
        "sites": [p.to_dict() for p in profiles],
        "privacy": None if plan.dp is None else {**plan.dp.to_dict(rounds), "stopped_at_target": stopped},
    }  # fmt: skip
    tmp = run_dir / "federated.json.tmp"  # written last, whole: its presence says the run is complete
    tmp.write_text(json.dumps(about, indent=2))
    tmp.replace(run_dir / "federated.json")
    return FederatedResult(run_dir, rows, profiles, _summary(plan, rounds, rows, profiles))


def _summary(plan: Plan, rounds: int, rows: list[dict[str, float]], profiles: list[SiteProfile]) -> list[str]:
    last = rows[-1] if rows else {}
    lines = [f"round {rounds}: global val/dice_mean {last.get('val/dice_mean', math.nan):.4f}"] + [
        f"  site {p.name}: val/dice_mean {last.get(f'val/{p.name}/dice_mean', math.nan):.4f} "
        f"({p.train} training, {p.val} validation images)" for p in profiles
    ]  # fmt: skip
    if plan.dp is not None:
        spent = plan.dp.epsilon(rounds)
        eps = f"epsilon {spent:.3f}" if math.isfinite(spent) else "no epsilon bound (no noise)"
        lines.append(f"site-level privacy: {eps} at delta {plan.dp.delta:g} after {rounds} round(s)")
        if rounds < plan.rounds:
            following = plan.dp.epsilon(rounds + 1)
            lines.append(f"stopped after round {rounds} of {plan.rounds}: round {rounds + 1} would spend epsilon "
                         f"{following:.3f}, above --dp-target-epsilon {plan.dp.target_epsilon:g}")  # fmt: skip
    return lines
