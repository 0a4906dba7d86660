"""ONNX export: dynamic batch and spatial axes, one probability output per head, the run's settings."""

import numpy as np
import pytest
import torch

from bioseg.nn.bundle import ModelBundle
from bioseg.workflows.export_model import check_sizes, probability_net
from bioseg.workflows.export_onnx import check_onnx, read_metadata, session


@pytest.mark.parametrize("kind", ["2d", "3d", "multihead"])
def test_outputs_are_named_by_head_and_every_axis_but_channels_is_dynamic(exported, kind):
    sess = session(exported[kind] / "model.onnx")
    meta = read_metadata(exported[kind] / "model.onnx")
    assert [o.name for o in sess.get_outputs()] == list(meta["heads"])
    shape = sess.get_inputs()[0].shape
    assert isinstance(shape[0], str) and shape[1] == meta["in_channels"]
    assert all(isinstance(s, str) for s in shape[2:])


def test_the_metadata_carries_what_prediction_needs(exported, run_multihead):
    meta = read_metadata(exported["multihead"] / "model.onnx")
    assert meta["normalization"]["mode"] == "per_image" and meta["normalization"]["percentiles"] == [2.0, 99.5]
    assert meta["heads"]["fg"] == {"type": "binary", "channels": 1, "target": "foreground",
                                   "activation": "sigmoid", "threshold": 0.5}  # fmt: skip
    assert meta["heads"]["cells"]["activation"] == "softmax" and meta["heads"]["cells"]["channels"] == 3
    assert meta["in_channels"] == 2 and meta["tile_size"] == [32, 32] and meta["size_divisor"] == [4, 4]
    assert meta["classes"] == ["background", "foreground"] and "instances" in meta["post"]


def test_probabilities_match_pytorch_at_sizes_other_than_the_export_size(exported, run_3d):
    bundle = ModelBundle.load(run_3d)
    model = probability_net(bundle)
    shapes = check_sizes(bundle)
    assert all(s[2:] != (8, 32, 32) for s in shapes) and {s[0] for s in shapes} == {1, 2}
    assert check_onnx(exported["3d"] / "model.onnx", model, shapes) == []
    x = np.random.default_rng(0).normal(size=(3, 1, 4, 12, 20)).astype(np.float32)  # any multiple of (1, 2, 2)
    (got,) = session(exported["3d"] / "model.onnx").run(None, {"input": x})
    with torch.inference_mode():
        (expected,) = model(torch.from_numpy(x))
    assert np.abs(got - expected.numpy()).max() <= 1e-4


def test_a_different_network_fails_the_check_in_one_line_per_size(exported, run_3d):
    bundle = ModelBundle.load(run_3d)
    model = probability_net(bundle)
    with torch.no_grad():
        next(model.parameters()).add_(0.5)
    problems = check_onnx(exported["3d"] / "model.onnx", model, check_sizes(bundle))
    assert len(problems) == 2 and all(p.startswith("onnx: head 'mask' at input") for p in problems)
