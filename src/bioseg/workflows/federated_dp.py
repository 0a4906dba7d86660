"""Site-level differential privacy for federated training, with Flower's own wrappers.

Every site clips its update (its new weights minus the global ones it received) to the L2 norm ``C``
(Flower's ``fixedclipping_mod``); the server averages the clipped updates and adds Gaussian noise of
standard deviation ``z·C/sites`` (Flower's ``DifferentialPrivacyClientSideFixedClipping``, after Andrew
et al. and McMahan et al.). That noise is calibrated to an unweighted mean, in which one site moves the
average by at most ``C/sites``; a mean weighted by the sites' images would let a large site move it
further than the noise covers, so with privacy every site counts once. The unit of privacy is one site's
whole contribution: the spent epsilon is that of the Gaussian mechanism once per round (sampling rate:
the share of sites that train each round, all of them here), composed over the rounds by Opacus's Rényi
accountant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from bioseg.config import Experiment
from bioseg.engine.privacy import epsilon_after, require_opacus
from bioseg.errors import BiosegError
from bioseg.nn.bundle import build_network

UNIT = "one site's whole contribution per round (its clipped weight update)"
SITE_WEIGHT = "one-site"  # the weight every site sends: with privacy the average counts each site once


@dataclass(frozen=True)
class SiteDP:
    noise_multiplier: float  # noise std / clipping_norm; 0 clips without noise (no guarantee)
    clipping_norm: float  # each site's update is clipped to this L2 norm
    delta: float = 1e-5
    target_epsilon: float | None = None  # the run stops before a round would pass it
    sample_rate: float = 1.0  # the share of sites that train each round

    def __post_init__(self) -> None:
        if self.clipping_norm <= 0 or self.noise_multiplier < 0:
            raise BiosegError(f"--dp-clipping-norm ({self.clipping_norm:g}) must be above 0 and "
                              f"--dp-noise-multiplier ({self.noise_multiplier:g}) 0 or more")  # fmt: skip
        if not 0 < self.delta < 1:
            raise BiosegError(f"--dp-delta ({self.delta:g}) must lie between 0 and 1")
        if self.target_epsilon is not None and self.noise_multiplier == 0:
            raise BiosegError("--dp-target-epsilon needs noise: without it (--dp-noise-multiplier 0) a round "
                              "spends an unbounded epsilon")  # fmt: skip
        require_opacus()

    def epsilon(self, rounds: int) -> float:
        """Epsilon spent after ``rounds`` rounds (at ``delta``); infinite without noise."""
        if self.noise_multiplier == 0:
            return math.inf if rounds > 0 else 0.0
        return epsilon_after(rounds, self.noise_multiplier, self.sample_rate, self.delta)

    def rounds_within(self, rounds: int) -> int:
        """How many of ``rounds`` rounds fit in ``target_epsilon``: the run stops before the one that
        would pass it. The epsilon of a round is known beforehand (fixed noise, every site trains)."""
        if self.target_epsilon is None:
            return rounds
        allowed = 0
        while allowed < rounds and self.epsilon(allowed + 1) <= self.target_epsilon:
            allowed += 1
        if allowed == 0:
            raise BiosegError(f"one round already spends epsilon {self.epsilon(1):.3g}, above --dp-target-epsilon "
                              f"{self.target_epsilon:g}; raise --dp-noise-multiplier")  # fmt: skip
        return allowed

    def to_dict(self, rounds: int) -> dict[str, Any]:
        spent = self.epsilon(rounds)
        return {"noise_multiplier": self.noise_multiplier, "clipping_norm": self.clipping_norm, "delta": self.delta,
                "target_epsilon": self.target_epsilon, "sample_rate": self.sample_rate, "rounds": rounds,
                "epsilon": spent if math.isfinite(spent) else None, "accountant": "rdp (opacus)", "unit": UNIT,
                "aggregation": "unweighted mean of the clipped updates + Gaussian noise (Flower)"}  # fmt: skip


def dp_experiment(cfg: Experiment) -> tuple[Experiment, str | None]:
    """``cfg`` for site-level privacy: GroupNorm instead of BatchNorm, whose running statistics and
    batch counters would take their share of the clipping norm and receive the server's noise (a noisy
    running variance can turn negative). Returns the experiment and a line saying what changed."""
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in build_network(cfg).modules()):
        was = cfg.model.norm or "batch"
        cfg = cfg.model_copy(deep=True)
        cfg.model.norm = "group"
        return cfg, (f"site-level privacy: model.norm {was} → group (BatchNorm's running statistics would be "
                     "clipped and noised with the weights)")  # fmt: skip
    return cfg, None


def private_strategy(inner: Any, dp: SiteDP, sites: int, check: Any, released: Any) -> Any:
    """``inner`` (FedAvg or FedProx counting each site once) wrapped by Flower's client-side fixed
    clipping strategy, which sends ``C`` to the sites and noises the average. ``check(replies)`` refuses
    a round in which a site failed (Flower's wrapper would skip its aggregation quietly);
    ``released(round, arrays)`` sees each noised global model."""
    from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping

    class Released(DifferentialPrivacyClientSideFixedClipping):
        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            check(replies, "train")
            arrays, metrics = super().aggregate_train(server_round, replies)
            if arrays is not None:
                released(server_round, arrays)
            return arrays, metrics

    return Released(inner, dp.noise_multiplier, dp.clipping_norm, sites)


def clip_when_asked(msg: Any, context: Any, call_next: Any) -> Any:
    """Flower's ``fixedclipping_mod`` on the train messages that carry a clipping norm (the server's
    privacy wrapper adds it); other rounds pass through unchanged."""
    from flwr.clientapp.mod import fixedclipping_mod
    from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

    if KEY_CLIPPING_NORM in msg.content["config"]:
        return fixedclipping_mod(msg, context, call_next)
    return call_next(msg, context)
