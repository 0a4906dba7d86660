"""Test-time views: each one maps back exactly, and averaging them changes nothing for a model that
answers every view alike."""

import numpy as np
import pytest
import torch
from helpers import PointwiseNet, two_heads

from bioseg.inference.predictor import Predictor
from bioseg.inference.tta import IDENTITY, views


def test_view_counts_and_identity_first():
    assert len(views(2)) == 8 and len(set(views(2))) == 8
    assert len(views(3)) == 16 and len(set(views(3))) == 16
    assert views(2)[0] == IDENTITY and views(3)[0].is_identity


@pytest.mark.parametrize("shape", [(3, 7, 9), (2, 8, 8), (2, 5, 8, 9), (1, 4, 6, 6)])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_every_view_round_trips_exactly(shape, as_tensor):
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    if as_tensor:
        x = torch.from_numpy(x)
    seen = set()
    for view in views(len(shape) - 1):
        y = view.apply(x)
        assert y.shape[:-2] == x.shape[:-2]  # channels and (3D) z stay where they are
        assert np.array_equal(np.asarray(view.invert(y)), np.asarray(x))
        seen.add(np.asarray(y).tobytes() + bytes(str(y.shape), "ascii"))
    assert len(seen) == len(views(len(shape) - 1))  # all views differ on a random image


def test_3d_views_never_move_z():
    x = np.arange(5 * 8 * 9, dtype=np.float32).reshape(1, 5, 8, 9)
    for view in views(3):
        y = view.apply(x)
        assert y.shape[1] == 5
        planes = {tuple(np.sort(y[0, k].ravel())) for k in range(5)}
        assert planes == {tuple(np.sort(x[0, k].ravel())) for k in range(5)}  # each z plane stays one plane


@pytest.mark.parametrize("dims, spatial", [(2, (13, 10)), (3, (5, 8, 9))])
def test_tta_of_an_equivariant_model_equals_no_tta(dims, spatial):
    net = PointwiseNet(dims, {"mask": 1, "kind": 3})
    image = np.random.default_rng(1).normal(size=(2, *spatial)).astype(np.float32)
    plain = Predictor(net, two_heads(dims)).predict_prepared(image)
    tta = Predictor(net, two_heads(dims, tta=True)).predict_prepared(image)
    for head in ("mask", "kind"):
        np.testing.assert_allclose(tta.probabilities[head], plain.probabilities[head], atol=1e-5)
        np.testing.assert_array_equal(tta.labels[head], plain.labels[head])
        assert tta.mutual_information[head].max() < 1e-5  # every view said the same
    assert plain.mutual_information == {}


def test_tta_averages_the_views_of_a_model_that_is_not_equivariant():
    class LeftEdge(PointwiseNet):  # the probability rises from left to right: not flip-invariant
        def forward(self, x):
            ramp = torch.linspace(-3, 3, x.shape[-1]).expand_as(x[:, :1])
            return {"mask": ramp.clone(), "kind": torch.cat([ramp, -ramp, 0 * ramp], 1)}

    image = np.zeros((2, 8, 8), np.float32)
    net = LeftEdge(2, {"mask": 1, "kind": 3})
    cfg = two_heads(2, tta=True, overlap=0.0)
    p = Predictor(net, cfg).predict_prepared(image)
    np.testing.assert_allclose(p.probabilities["mask"], 0.5, atol=1e-6)  # every direction once: no preference
    information = p.mutual_information["mask"]
    assert information[0, 0] > 0.7 and information.mean() > 0.3  # the views disagreed, most at the corners
    np.testing.assert_allclose(p.uncertainty["mask"], 1.0, atol=1e-5)  # a mean of 0.5: the most uncertain


def test_tta_composes_with_rescaling():
    net = PointwiseNet(2, {"mask": 1, "kind": 3})
    raw = np.random.default_rng(4).normal(size=(2, 15, 11)).astype(np.float32)
    plain = Predictor(net, two_heads(2, rescale=1.5)).predict(raw)
    tta = Predictor(net, two_heads(2, rescale=1.5, tta=True)).predict(raw)
    assert tta.scale == plain.scale == 1.5
    assert tta.probabilities["kind"].shape == (3, 15, 11) and tta.mutual_information["kind"].shape == (15, 11)
    np.testing.assert_allclose(tta.probabilities["kind"], plain.probabilities["kind"], atol=1e-5)
