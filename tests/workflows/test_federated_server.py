"""The server's plan: refused mistakes in one line, the network site-level privacy needs, and the
flat run config it travels as in a deployed Flower App (``--run-config`` overrides a key)."""

import pytest

from bioseg import config
from bioseg.errors import BiosegError
from bioseg.workflows.federated import make_plan
from bioseg.workflows.federated_dp import SiteDP
from bioseg.workflows.federated_server import Plan

pytest.importorskip("opacus", reason="the private extra (bioseg[private]) is not installed")


def test_the_plan_survives_the_run_config_and_takes_overrides(tmp_path):
    exp = {"name": "fed", "output_dir": str(tmp_path / "runs"), "data": {"root": "unused"}}
    plan = make_plan(exp, rounds=3, sites=3, strategy="FedProx", proximal_mu=0.1, keep_updates=True,
                     dp=SiteDP(1.1, 0.5, 1e-6, 9.0))  # fmt: skip
    assert plan.strategy == "fedprox" and plan.run_dir == str((tmp_path / "runs" / "fed" / "fold_0").resolve())
    assert config.from_dict(plan.experiment).model.norm == "group"  # privacy: no BatchNorm statistics to noise
    run_config = plan.to_run_config()
    assert all(isinstance(v, bool | int | float | str) for v in run_config.values())  # what Flower's config holds
    assert Plan.from_run_config(run_config) == plan
    assert Plan.from_run_config({**run_config, "rounds": 7, "dp-clipping-norm": 0.0}).rounds == 7
    assert Plan.from_run_config({**run_config, "dp-clipping-norm": 0.0}).dp is None


def test_mistakes_are_one_line(tmp_path):
    exp = {"data": {"root": "unused"}, "train": {"privacy": {"noise_multiplier": 1.0}}}
    with pytest.raises(BiosegError, match=r"train.privacy \(DP-SGD, one image as the unit\) is not available"):
        make_plan(exp, rounds=1, sites=2)
    with pytest.raises(BiosegError, match="choose fedavg or fedprox"):
        make_plan({"data": {"root": "unused"}}, rounds=1, sites=2, strategy="fedsgd")
    with pytest.raises(BiosegError, match="run config is incomplete or invalid"):
        Plan.from_run_config({"rounds": 2})
