"""The size model: an object size read from the network's features, fitted on resized training images."""

import math

import numpy as np
import pytest
import torch
from data.test_object_sizes import discs
from inference.test_rescale import SIZES, predictor

from bioseg.data.resize import resample
from bioseg.inference import size_model
from bioseg.inference.rescale import scaled_shape
from bioseg.nn.unet import UNet


def disc_image(radius: float, seed: int, shape=(192, 192)) -> np.ndarray:
    """A normalised ``(1, *shape)`` image of bright discs on a dark ground."""
    return (discs(radius, shape=shape, n=40, seed=seed) > 0).astype(np.float32)[None] * 2 - 1


@pytest.fixture(scope="module")
def fitted():
    torch.manual_seed(0)
    net = UNet(spatial_dims=2, in_channels=1, heads={"mask": 1}, widths=(8, 16, 32)).eval()
    images = [disc_image(6.0, seed) for seed in range(8)]
    return net, size_model.fit_size_model(net, images, [12.0] * len(images))


@pytest.mark.parametrize("factor", [0.5, 0.75, 1.0, 1.5, 2.0])
def test_the_size_of_unseen_discs_is_read_within_10_percent_at_several_magnifications(fitted, factor):
    net, model = fitted
    image = disc_image(6.0, seed=99)
    resized = resample(image, scaled_shape(image.shape[1:], factor), nearest=False)
    assert size_model.estimate_size(model, net, resized) == pytest.approx(12.0 * factor, rel=0.1)


def test_the_fit_is_recorded_as_json_numbers(fitted):
    net, model = fitted
    assert len(model["weights"]) == len(model["mean"]) == 2 * sum(net.widths)  # mean and std per channel
    assert model["pairs"] >= 8 * 2 and model["fit_range"] == list(size_model.FIT_RANGE)


def test_a_network_without_encoder_levels_or_too_few_images_has_none(fitted):
    net, _ = fitted
    assert size_model.fit_size_model(net, [disc_image(6.0, 0)], [12.0]) is None
    assert size_model.fit_size_model(torch.nn.Conv2d(1, 1, 1), [disc_image(6.0, 0)] * 2, [12.0] * 2) is None


def test_estimates_are_compared_by_how_far_their_factors_are_from_the_truth():
    images = [disc_image(6.0, 0, shape=(64, 64))]
    sizes = {1.0: 64, 0.5: 32, 2.0: 128}  # each resize factor, told apart by the image size

    def exact(image):
        return 64 / image.shape[-1]

    errors = size_model.compare_estimates(images, {"exact": exact, "never": lambda image: 1.0})
    assert set(sizes) == set(size_model.CHECK_FACTORS)
    assert errors == {"exact": 0.0, "never": round(math.log(2), 4)}  # wrong at 0.5 and 2: the median


def test_auto_uses_the_size_model_where_it_was_measured_better(monkeypatch):
    model = {"mean": [0.0], "scale": [1.0], "weights": [0.0], "bias": math.log(64.0), "use": True}
    p = predictor(objects={"depth_diameter_px": SIZES, "size_model": model}, rescale="auto")
    monkeypatch.setattr(size_model, "style", lambda net, image, autocast=None: np.zeros(1))  # reads 64 px
    image = (discs(8.0, shape=(64, 64), n=2) > 0).astype(np.float32)
    prediction = p.predict(image)
    assert prediction.object_size == pytest.approx(64.0) and prediction.scale == pytest.approx(16.0 / 64.0)
    assert len(p._fast_net.calls) == 1 and prediction.probabilities["mask"].shape == (1, 64, 64)  # no first pass


def test_auto_keeps_the_first_pass_where_the_size_model_was_not_better():
    model = {"mean": [0.0], "scale": [1.0], "weights": [0.0], "bias": math.log(64.0), "use": False}
    p = predictor(objects={"depth_diameter_px": SIZES, "size_model": model}, rescale="auto")
    prediction = p.predict((discs(8.0, shape=(64, 64), n=2) > 0).astype(np.float32))
    assert prediction.scale == 1.0 and prediction.object_size == pytest.approx(16.0, rel=0.1)
