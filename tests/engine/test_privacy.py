"""Private training (train.privacy): epsilon per epoch, the stop at the target, BatchNorm converted,
unsupported layers named, and the run folder an ordinary run."""

import json
import logging

import numpy as np
import pytest
import torch
from helpers import TINY

import bioseg
from bioseg.engine.privacy import check_private_network, epsilon_after
from bioseg.errors import BiosegError
from bioseg.inference.predictor import Predictor
from bioseg.nn.bundle import ModelBundle, read_meta
from bioseg.reports.history import read_metrics_csv

pytest.importorskip("opacus", reason="the private extra (bioseg[private]) is not installed")


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _train_noting(settings, overrides):
    lines = _Lines()
    logger = logging.getLogger("bioseg")
    level = logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    try:
        return bioseg.train(settings, overrides=overrides, progress=False), lines.lines
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)


@pytest.fixture(scope="module")
def private_run(cells_dir, tmp_path_factory):
    """A 2D UNet (BatchNorm by default) trained with noise 0.5 until epsilon 20: it stops early."""
    settings = {
        "name": "dp", "output_dir": str(tmp_path_factory.mktemp("dp")), "data": {"root": str(cells_dir)},
        "train": {"privacy": {"noise_multiplier": 0.5, "max_grad_norm": 1.0, "target_epsilon": 20, "delta": 1e-5}},
    }  # fmt: skip
    return _train_noting(settings, [*TINY, "train.epochs=6", "data.batch_size=2"])


def test_a_private_run_reports_epsilon_per_epoch_and_stops_at_the_target(private_run):
    result, lines = private_run
    report = json.loads((result.run_dir / "privacy.json").read_text())
    assert report["stopped_at_target"] and report["noise_multiplier"] == 0.5
    # 6 training images drawn with probability 2/6: 3 steps per epoch, 18 planned
    assert report["sample_rate"] == pytest.approx(1 / 3) and report["steps"] < 18
    eps = epsilon_after(report["steps"], 0.5, report["sample_rate"], 1e-5)
    assert report["epsilon"] == pytest.approx(eps) and eps <= 20
    assert epsilon_after(report["steps"] + 1, 0.5, report["sample_rate"], 1e-5) > 20  # one more would pass it
    rows = read_metrics_csv(result.run_dir / "metrics.csv")
    spent = [r["privacy/epsilon"] for r in rows]
    assert len(rows) < 6 and spent == sorted(spent) and spent[-1] == pytest.approx(eps)
    assert (result.run_dir / "charts" / "privacy.png").is_file()
    assert any("stopped at step" in line and "target_epsilon 20" in line for line in lines)
    assert any(line.startswith("privacy: epsilon") for line in result.summary)


def test_batchnorm_is_converted_in_the_config_and_the_run_loads_as_any_other(private_run):
    result, lines = private_run
    assert sum("model.norm batch → group" in line for line in lines) == 1
    bundle = ModelBundle.load(result.run_dir)
    assert bundle.cfg.model.norm == "group" and "group" in json.dumps(read_meta(bundle.model_dir)["network"])
    net = Predictor.from_run(result.run_dir).net
    kinds = {type(m) for m in net.modules()}
    assert torch.nn.GroupNorm in kinds and not any(issubclass(k, torch.nn.modules.batchnorm._BatchNorm) for k in kinds)
    image = np.random.default_rng(0).random((48, 40)).astype(np.float32)
    labels = Predictor.from_run(result.run_dir).predict(image).labels["mask"]
    assert labels.shape == (48, 40)
    from bioseg.workflows.evaluate import evaluate_run

    scores = evaluate_run(result.run_dir, split="test", progress=False)
    assert scores.metrics_json.is_file() and 0 <= scores.scores["dice_mean"] <= 1


def test_a_target_alone_spends_it_over_the_planned_steps_in_3d(volumes, tmp_path):
    settings = {
        "name": "dp3d", "output_dir": str(tmp_path),
        "data": {"root": str(volumes), "labels": "instance", "patch_size": [8, 16, 16], "batch_size": 2},
        "model": {"spatial_dims": 3, "widths": [4, 8], "pool_sizes": [[1, 2, 2]]},
        "heads": {"fg": {"type": "binary", "target": "foreground"}},
        "infer": {"patch_size": [8, 16, 16]},
        "train": {"epochs": 2, "snapshots": 0, "privacy": {"target_epsilon": 4.0}},
    }  # fmt: skip
    result, lines = _train_noting(settings, [])
    report = json.loads((result.run_dir / "privacy.json").read_text())
    assert not report["stopped_at_target"] and report["steps"] == 2 * round(1 / report["sample_rate"])
    assert 3.98 <= report["epsilon"] <= 4.0  # Opacus's search for the noise stops within 0.01 below the target
    assert any("noise multiplier" in line and "spends epsilon 4" in line for line in lines)
    assert ModelBundle.load(result.run_dir).cfg.model.norm == "group"


def test_layers_opacus_cannot_train_are_named_in_one_line():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 1, 1))
    with pytest.raises(BiosegError, match=r"1 layer\(s\): 1 \(BatchNorm2d") as err:
        check_private_network(net)
    assert "\n" not in str(err.value) and "model.norm" in str(err.value)
    check_private_network(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.GroupNorm(2, 4)))


def test_epsilon_matches_opacus_accountant():
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    for _ in range(7):
        accountant.step(noise_multiplier=1.1, sample_rate=0.05)
    assert epsilon_after(7, 1.1, 0.05, 1e-5) == pytest.approx(accountant.get_epsilon(1e-5))
    assert epsilon_after(0, 1.1, 0.05, 1e-5) == 0.0


def test_without_opacus_one_line_names_the_extra(cells_dir, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "opacus" else real(name, *a))
    settings = {"output_dir": str(tmp_path), "data": {"root": str(cells_dir)}}
    settings["train"] = {"privacy": {"target_epsilon": 3}}
    with pytest.raises(BiosegError, match=r"pip install 'bioseg\[private\]'"):
        bioseg.train(settings, overrides=TINY, progress=False)


def test_an_empty_poisson_batch_still_takes_a_noisy_step():
    """Poisson sampling may draw no image: the step adds noise alone, as the accounting assumes."""
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    from bioseg import config
    from bioseg.engine.privacy import PrivateSegmentationModule

    cfg = config.from_dict({"data": {"root": "absent", "patch_size": [16, 16]},
                            "model": {"widths": [4, 8], "norm": "group"},
                            "train": {"privacy": {"noise_multiplier": 1.0}}})  # fmt: skip
    module = PrivateSegmentationModule(config.to_dict(cfg))
    loader = DataLoader(TensorDataset(torch.zeros(4, 1, 16, 16)), batch_size=2)
    _, optimizer, _ = PrivacyEngine(accountant="rdp").make_private(
        module=module.net, optimizer=module.build_optimizer(), data_loader=loader, noise_multiplier=1.0,
        max_grad_norm=1.0, poisson_sampling=False, wrap_model=False,
    )  # fmt: skip
    before = [p.detach().clone() for p in module.net.parameters()]
    assert module.training_step({"image": torch.zeros(0, 1, 16, 16)}, 0) is None  # Lightning: no backward
    optimizer.zero_grad()  # as Lightning's closure does, after the training step
    module.on_before_optimizer_step(optimizer)
    optimizer.step()
    after = list(module.net.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))  # the noise moved them
