"""Temperature scaling: the fitted temperature undoes over-confidence, lowers the calibration error,
is written into the model and applied by every later prediction."""

import json

import numpy as np
import pytest
import torch
from helpers import run_cli

from bioseg import config
from bioseg.inference.predictor import Predictor
from bioseg.nn.bundle import build_network, save_model
from bioseg.workflows.calibrate import fit_temperature, head_ece, nll


def overconfident(kind: str, n: int = 20000, factor: float = 5.0, seed: int = 0):
    """Logits ``factor`` times too large for labels drawn from the true probabilities."""
    rng = np.random.default_rng(seed)
    if kind == "binary":
        z = rng.normal(0, 1.5, (1, n))
        labels = (rng.random(n) < 1 / (1 + np.exp(-z[0]))).astype(np.int64)
    else:
        z = rng.normal(0, 1.5, (3, n))
        p = np.exp(z) / np.exp(z).sum(0)
        labels = (rng.random(n)[None] > np.cumsum(p, 0)).sum(0)
    return (factor * z).astype(np.float32), labels


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_fitted_temperature_undoes_overconfidence(kind):
    logits, labels = overconfident(kind)
    t = fit_temperature(logits, labels, kind)
    assert t == pytest.approx(5.0, rel=0.1)
    assert nll(logits, labels, kind, t) < nll(logits, labels, kind)
    assert head_ece(logits, labels, kind, t) < head_ece(logits, labels, kind) / 3


@pytest.fixture
def overconfident_run(cells_dir, tmp_path):
    cfg = config.from_dict({
        "name": "sure",
        "model": {"widths": [4, 8]},
        "data": {"root": str(cells_dir), "patch_size": [32, 32]},
        "infer": {"precision": "fp32", "patch_size": [32, 32]},
    })  # fmt: skip
    torch.manual_seed(0)
    net = build_network(cfg)
    with torch.no_grad():
        net.head_convs["mask"].weight.mul_(40)  # a network far surer than it is right
    return save_model(net, cfg, tmp_path / "runs" / "sure" / "fold_0").parent


def test_calibrate_lowers_the_error_and_predictions_apply_the_temperature(overconfident_run, capsys):
    image = np.random.default_rng(0).random((40, 40), dtype=np.float32)
    before = Predictor.from_run(overconfident_run).predict(image).probabilities["mask"]
    assert run_cli("calibrate", overconfident_run, "--no-progress") == 0
    out = capsys.readouterr().out
    assert "ECE" in out and "→" in out
    doc = json.loads((overconfident_run / "calibration.json").read_text())
    head = doc["heads"]["mask"]
    assert head["temperature"] > 1 and head["ece_after"] < head["ece_before"]
    assert (overconfident_run / "calibration.png").is_file()
    meta = json.loads((overconfident_run / "model" / "model.json").read_text())
    t = meta["infer"]["temperature"]["mask"]
    assert t == pytest.approx(head["temperature"], rel=1e-3)
    after = Predictor.from_run(overconfident_run).predict(image).probabilities["mask"]
    logit = np.log(before) - np.log1p(-before)
    sure = np.abs(logit) < 15  # where float32 still resolves the logit
    np.testing.assert_allclose(after[sure], 1 / (1 + np.exp(-logit[sure] / t)), atol=1e-4)
