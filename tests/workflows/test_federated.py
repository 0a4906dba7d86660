"""Federated training through the CLI: 2 sites x 2 rounds under Flower's simulation runtime. The global
model after round 1 is the mean of the sites' models weighted by their training images; the scores
per site and global per round land in metrics.csv; the result is an ordinary run folder."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from bioseg.inference.predictor import Predictor
from bioseg.reports.history import read_metrics_csv

pytest.importorskip("flwr", reason="the private extra (bioseg[private]) is not installed")
pytest.importorskip("ray", reason="the private extra (bioseg[private]) is not installed")


def _sent(path):
    with safe_open(str(path), "pt") as f:
        return load_file(str(path)), int(f.metadata()["num-examples"])


def test_global_model_after_round_one_is_the_sample_weighted_mean(federated_run):
    folder = federated_run / "updates" / "round_001"
    (a, n_a), (b, n_b) = _sent(folder / "lab_a.safetensors"), _sent(folder / "lab_b.safetensors")
    assert (n_a, n_b) == (4, 7)  # the sites' training images
    merged = load_file(str(folder / "global.safetensors"))
    floats = [k for k in merged if merged[k].is_floating_point() and "num_batches" not in k]
    assert any(not torch.allclose(a[k], b[k]) for k in floats)  # the sites did train differently
    for k in floats:
        expected = (n_a * a[k].double() + n_b * b[k].double()) / (n_a + n_b)
        torch.testing.assert_close(merged[k].double(), expected, rtol=0, atol=1e-6)


def test_the_final_global_model_is_an_ordinary_run(federated_run):
    last = load_file(str(federated_run / "updates" / "round_002" / "global.safetensors"))
    predictor = Predictor.from_run(federated_run)
    state = predictor.net.state_dict()
    assert all(torch.allclose(state[k].double(), last[k].double(), atol=1e-7) for k in last)
    labels = predictor.predict(np.random.default_rng(0).random((40, 44)).astype(np.float32)).labels["mask"]
    assert labels.shape == (40, 44)
    about = json.loads((federated_run / "federated.json").read_text())
    assert about["strategy"] == "fedavg" and [s["name"] for s in about["sites"]] == ["lab_a", "lab_b"]


def test_each_round_has_site_and_global_scores(federated_run):
    rows = read_metrics_csv(federated_run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1.0, 2.0]
    for r in rows:  # global: the sites' scores weighted by their validation images (2 and 3)
        assert r["val/dice_mean"] == pytest.approx((2 * r["val/lab_a/dice_mean"] + 3 * r["val/lab_b/dice_mean"]) / 5)
        assert np.isfinite(r["train/lab_a/loss"]) and np.isfinite(r["train/lab_b/loss"])
    assert (federated_run / "charts" / "dice.png").is_file()
