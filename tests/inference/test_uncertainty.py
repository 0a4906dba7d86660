"""Uncertainty maps: zero where every prediction is sure of the same answer, high where they disagree."""

import math

import numpy as np
import torch
from helpers import two_heads

from bioseg.inference.predictor import Predictor
from bioseg.inference.uncertainty import (
    EXPECTED_ENTROPY,
    EntropyMaps,
    RunningMean,
    entropy,
    mutual_information,
    split_maps,
)


class Fixed(torch.nn.Module):
    """Logits ±20 for the binary head and a sure class for the 3-class head; the right half's sign
    and class are ``right``'s."""

    def __init__(self, right: int) -> None:
        super().__init__()
        self.right = right
        self.size_divisor = 1

    def forward(self, x):
        width = x.shape[-1]
        sign = torch.ones_like(x[:, :1])
        sign[..., width // 2 :] = 1 if self.right == 0 else -1
        kind = torch.cat([20 * sign, -20 * sign, -20 * torch.ones_like(sign)], 1)
        return {"mask": 20 * sign, "kind": kind}


def test_entropy_is_zero_when_sure_and_one_when_uniform():
    assert float(entropy(np.array([[0.0, 1.0]]), "binary").max()) == 0
    np.testing.assert_allclose(entropy(np.array([[0.5]]), "binary"), 1.0, atol=1e-6)
    np.testing.assert_allclose(entropy(np.full((3, 2), 1 / 3), "multiclass"), 1.0, atol=1e-6)
    p = np.array([[0.7], [0.2], [0.1]])
    expected = -(p * np.log(p)).sum() / math.log(3)
    np.testing.assert_allclose(entropy(p, "multiclass"), [expected], atol=1e-6)


def test_running_mean_matches_the_batch_formulas():
    rng = np.random.default_rng(0)
    preds = [rng.dirichlet([1, 1, 1], size=(5, 6)).transpose(2, 0, 1).astype(np.float32) for _ in range(4)]
    mean = RunningMean({"k": "multiclass"})
    for p in preds:
        mean.add({"k": torch.from_numpy(p)})
    probs, expected = split_maps(mean.result())
    np.testing.assert_allclose(probs["k"], np.mean(preds, 0), atol=1e-6)
    each = np.mean([entropy(p, "multiclass").numpy() for p in preds], 0)
    np.testing.assert_allclose(expected["k"], each, atol=1e-6)
    information = mutual_information(entropy(probs["k"], "multiclass").numpy(), expected["k"])
    assert information.min() >= 0


def test_uncertainty_is_zero_where_members_agree_and_high_where_they_disagree():
    predictor = Predictor(Fixed(right=0), two_heads(2, overlap=0.0))
    predictor.add_member(Fixed(right=1), two_heads(2))
    result = predictor.predict_prepared(np.zeros((2, 8, 8), np.float32))
    for head in ("mask", "kind"):
        entropy_map, information = result.uncertainty[head], result.mutual_information[head]
        assert entropy_map[:, :4].max() < 1e-6 and information[:, :4].max() < 1e-6  # both sure, the same
        assert entropy_map[:, 4:].min() > 0.6 and information[:, 4:].min() > 0.6  # each sure, of another answer
    np.testing.assert_allclose(result.mutual_information["mask"][:, 4:], 1.0, atol=1e-5)


def test_one_prediction_keeps_no_entropy_map_and_a_second_one_takes_both():
    first, second = torch.tensor([[[0.9, 0.5]]]), torch.tensor([[[0.1, 0.5]]])
    mean = RunningMean({"m": "binary"})
    mean.add({"m": first})
    assert mean.entropies == {}  # a single prediction has no disagreement to measure
    mean.add({"m": second})
    expected = (entropy(first, "binary") + entropy(second, "binary")).numpy() / 2
    np.testing.assert_allclose(mean.result()[EXPECTED_ENTROPY + "m"][0], expected, atol=1e-6)


def test_entropy_maps_are_computed_when_asked_for_and_kept():
    probs = {"m": np.array([[[0.5, 1.0]]], np.float32), "k": np.full((3, 1, 2), 1 / 3, np.float32)}
    maps = EntropyMaps(probs, {"m": "binary", "k": "multiclass"})
    assert dict(maps) == {}
    np.testing.assert_allclose(maps["m"], [[1.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(maps["k"], [[1.0, 1.0]], atol=1e-6)
    assert set(maps) == {"m", "k"} and maps["m"] is maps["m"]
