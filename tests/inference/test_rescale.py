"""Rescaled prediction: the factor from the objects' size, and results mapped back to the image."""

import numpy as np
import pytest
import torch
from data.test_object_sizes import discs
from helpers import best_ious

from bioseg import config
from bioseg.errors import BiosegError
from bioseg.inference import rescale
from bioseg.inference.instances import predict_instances
from bioseg.inference.predictor import Predictor


class Threshold(torch.nn.Module):
    """A 'network' whose foreground is where the image is bright: logits 20 (x - 0.5)."""

    size_divisor = 1

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls.append(tuple(x.shape[2:]))
        return {"mask": 20 * (x - 0.5)}


def predictor(objects=None, **infer) -> Predictor:
    raw = {"data": {"root": ".", "patch_size": [64, 64], "normalization": {"mode": "none"}},
           "infer": {"precision": "fp32", "overlap": 0.0, "patch_size": [64, 64]},
           "post": {"instances": {"mode": "foreground", "foreground_method": "components"}}}  # fmt: skip
    p = Predictor(Threshold(), config.from_dict(raw), **infer)
    p.objects = objects
    return p


SIZES = {"p10": 12.0, "median": 16.0, "p90": 20.0}  # depth diameters of training masks, pixels


def test_factor_is_one_within_the_training_spread_and_clipped_far_from_it():
    assert rescale.factor_for(SIZES, 12.0) == rescale.factor_for(SIZES, 22.0) == 1.0
    assert rescale.factor_for(SIZES, 32.0) == pytest.approx(0.5)  # to the training median
    assert rescale.factor_for(SIZES, 8.0) == pytest.approx(2.0)
    assert rescale.factor_for(SIZES, 200.0) == rescale.LIMITS[0]


@pytest.mark.parametrize("factor", [0.6, 1.5])
def test_rescaled_prediction_comes_back_at_the_image_size(factor):
    image = (discs(6.0, shape=(33, 34), n=1) > 0).astype(np.float32)
    p = predictor(rescale=factor)
    prediction = p.predict(image)
    assert prediction.scale == factor
    assert prediction.probabilities["mask"].shape == (1, 33, 34) and prediction.labels["mask"].shape == (33, 34)
    objects = predict_instances(prediction.probabilities, p.cfg, scale=prediction.scale)
    assert objects.shape == (33, 34) and objects.max() == 1


@pytest.mark.parametrize("radius", [4.0, 9.0, 20.0])
def test_auto_measures_the_objects_and_brings_them_to_the_training_size(radius):
    p = predictor(objects={"depth_diameter_px": SIZES}, rescale="auto")
    labels = discs(radius, shape=(200, 200), n=8)
    prediction = p.predict((labels > 0).astype(np.float32))
    expected = 1.0 if rescale.in_range(SIZES, 2 * radius) else 16.0 / (2 * radius)
    assert prediction.scale == pytest.approx(expected, rel=0.1)
    assert prediction.object_size == pytest.approx(2 * radius, rel=0.1)
    objects = predict_instances(prediction.probabilities, p.cfg, scale=prediction.scale)
    assert objects.max() == labels.max()
    assert best_ious(labels, objects).min() > 0.85  # every object found again, at its own place and size


def test_auto_at_the_training_size_predicts_once():
    p = predictor(objects={"depth_diameter_px": SIZES}, rescale="auto")
    p.predict((discs(8.0, shape=(64, 64), n=2) > 0).astype(np.float32))
    assert len(p._fast_net.calls) == 1  # the first pass is kept: no resampling near the training size


def test_given_object_size_sets_the_factor_without_measuring():
    p = predictor(objects={"depth_diameter_px": SIZES}, object_size=32.0)
    prediction = p.predict(np.zeros((40, 40), np.float32))
    assert prediction.scale == pytest.approx(0.5) and prediction.object_size == 32.0
    assert len(p._fast_net.calls) == 1  # one pass, at the given factor


def test_a_model_without_object_sizes_cannot_rescale_automatically():
    with pytest.raises(BiosegError, match="stores no size of its training objects"):
        predictor(objects=None, rescale="auto").predict(np.zeros((40, 40), np.float32))
    assert predictor(objects=None, rescale=2).predict(np.zeros((10, 10), np.float32)).scale == 2.0


def test_resize_and_rescale_exclude_each_other():
    raw = {"data": {"root": ".", "patch_size": [32, 32], "resize": 32}}
    with pytest.raises(BiosegError, match="data.resize"):
        Predictor(Threshold(), config.from_dict(raw), rescale="auto")


def test_a_fixed_factor_and_an_object_size_are_refused_together():
    with pytest.raises(Exception, match="keep one of them"):
        config.from_dict({"data": {"root": "."}, "infer": {"rescale": 2, "object_size": 10}})


def test_the_reference_is_what_the_model_itself_predicts_on_training_images():
    p = predictor()
    images = [(discs(r, shape=(96, 96), n=3, seed=i) > 0).astype(np.float32)[None] for i, r in enumerate((5, 7, 9))]
    sizes = rescale.predicted_sizes(p, images)
    assert sizes["p10"] < sizes["median"] < sizes["p90"]
    assert sizes["median"] == pytest.approx(14, rel=0.1)  # the middle one: discs of diameter 14
    objects = {"depth_diameter_px": {"p10": 1.0, "median": 2.0, "p90": 3.0}, "predicted_depth_diameter_px": sizes}
    assert rescale.reference_sizes(objects) == sizes  # preferred to the masks' sizes


def test_a_model_with_only_boundary_heads_measures_no_reference():
    raw = {"data": {"root": "."}, "heads": {"b": {"type": "binary", "target": "boundary"}}}
    assert rescale.predicted_sizes(Predictor(Threshold(), config.from_dict(raw)), [np.zeros((1, 8, 8))]) is None


def test_centre_crops_bound_the_voxels_and_keep_short_axes_whole():
    crop = rescale.centre_crop(np.arange(2048 * 2048).reshape(1, 2048, 2048), 512 * 512)
    assert crop.shape == (1, 512, 512) and crop[0, 0, 0] == 768 * 2048 + 768  # the middle of the image
    stack = rescale.centre_crop(np.zeros((2, 25, 1024, 1024)), 2**21)
    assert stack.shape[:2] == (2, 25) and np.prod(stack.shape[1:]) <= 2**21  # the 25 slices stay
    small = np.zeros((1, 64, 64))
    assert rescale.centre_crop(small, 10**6) is small


def test_measuring_the_reference_predicts_a_bounded_number_of_voxels(monkeypatch):
    images = [(discs(7, shape=(384, 384), n=40, seed=i) > 0).astype(np.float32)[None] for i in range(4)]
    whole = rescale.predicted_sizes(predictor(), images)
    monkeypatch.setattr(rescale, "MEASURED_VOXELS", 4 * 128 * 128)
    p = predictor()
    cropped = rescale.predicted_sizes(p, images)
    batches = p.members[0].net.calls  # 64² tiles, 4 a batch: one batch a 128² crop, 9 a whole 384² image
    assert len(batches) == 4 and set(batches) == {(64, 64)}
    assert cropped["median"] == pytest.approx(whole["median"], rel=0.05)  # the crops' objects are the same size
