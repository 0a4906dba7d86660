"""The ClientApp of every site, the same under Flower's simulation runtime and on a SuperNode: it
answers the server's query with the site's profile (counts, channels, mask values: no image), trains the
global weights on the site's images and scores them on its validation images.

Which site a node is comes from ``locate(context)``: the node's ``partition-id`` in simulation, its
``--node-config`` (``site``, ``data-dir``) on a SuperNode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bioseg import config as config_mod
from bioseg.errors import BiosegError
from bioseg.workflows.federated_dp import SITE_WEIGHT, clip_when_asked
from bioseg.workflows.federated_sites import SiteProfile, site_profile


@dataclass(frozen=True)
class Where:
    """Which site a node is, and what it trains."""

    experiment: dict[str, Any]
    name: str
    root: Path  # the site's data folder, on this node
    workdir: Path  # where Lightning may write (nothing is, with checkpoints and loggers off)
    order: int = 0  # the site's rank in the run's list of sites (simulation: its --site position)


def profile_record(profile: SiteProfile, order: int) -> dict[str, Any]:
    """A profile as a Flower ConfigRecord holds it (no None: absent mask values are instance ids)."""
    return {**{k: v for k, v in profile.to_dict().items() if v is not None}, "order": order}


def profile_from_record(record: Any) -> tuple[SiteProfile, int]:
    d = dict(record)
    values = d.get("mask_values")
    values = None if values is None else [int(v) for v in values]
    profile = SiteProfile(str(d["name"]), Path(str(d["root"])), [int(c) for c in d["channels"]], values,
                          int(d["train"]), int(d["val"]))  # fmt: skip
    return profile, int(d["order"])


def client_app(locate: Callable[[Any], Where]) -> Any:
    """The ClientApp; a site's images are read in the node's own process and stay there."""
    from flwr.app import ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app, opened = ClientApp(), {}

    def site_of(context):
        from bioseg.workflows.federated_local import Site

        where = locate(context)
        key = (where.name, str(where.root))
        if key not in opened:  # the images once per process (a SuperNode starts one per message)
            opened[key] = Site.open(where.name, where.experiment, where.root, where.workdir)
        return opened[key]

    def refusing(handler):
        """A site's own mistake (its data, its node config) goes back as one line, not a traceback."""

        def wrapped(msg, context):
            try:
                return handler(msg, context)
            except BiosegError as err:
                return Message(Error(code=0, reason=str(err)), reply_to=msg)

        wrapped.__name__ = handler.__name__
        return wrapped

    @app.query()
    @refusing
    def query(msg, context):
        where = locate(context)
        profile = site_profile(config_mod.from_dict(where.experiment), where.name, where.root)
        return Message(RecordDict({"profile": ConfigRecord(profile_record(profile, where.order))}), reply_to=msg)

    @app.train(mods=[clip_when_asked])
    @refusing
    def train(msg, context):
        from bioseg.workflows.federated_local import local_fit

        site, config = site_of(context), msg.content["config"]
        state, n, loss = local_fit(
            site, msg.content["arrays"].to_torch_state_dict(), epochs=int(config["local-epochs"]),
            server_round=int(config["server-round"]), proximal_mu=float(config.get("proximal-mu", 0.0)),
        )  # fmt: skip
        metrics = MetricRecord({"num-examples": n, SITE_WEIGHT: 1, "train-loss": loss})
        return Message(RecordDict({"arrays": ArrayRecord(torch_state_dict=state), "metrics": metrics}), reply_to=msg)

    @app.evaluate()
    @refusing
    def evaluate(msg, context):
        from bioseg.workflows.federated_local import local_validation

        scores, n = local_validation(site_of(context), msg.content["arrays"].to_torch_state_dict())
        return Message(RecordDict({"metrics": MetricRecord({**scores, "num-examples": n})}), reply_to=msg)

    return app
