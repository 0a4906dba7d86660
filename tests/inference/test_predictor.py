"""The predictor: precision choices, tiles, resizing, and what it predicts."""

import numpy as np
import pytest
import torch
from helpers import trained_like

from bioseg import config
from bioseg.errors import BiosegError
from bioseg.inference import precision
from bioseg.inference.precision import autocast_dtype
from bioseg.inference.predictor import Predictor
from bioseg.nn import create_model


def test_precision_choices():
    assert autocast_dtype("cpu", "fp32") is None
    assert autocast_dtype("cpu", "bf16") == torch.bfloat16
    assert autocast_dtype("cpu", "fp16") == torch.float16
    with pytest.raises(BiosegError, match="precision"):
        autocast_dtype("cpu", "int8")


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_follows_the_hardware(monkeypatch, native):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert autocast_dtype("cpu", "auto") == (torch.bfloat16 if native else None)
    assert autocast_dtype("cpu", "bf16") == torch.bfloat16  # asked for explicitly: whatever the hardware


@pytest.mark.parametrize(("asked", "seen"), [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_the_network_runs_in_the_precision_asked_for(asked, seen):
    net = create_model("unet", spatial_dims=2, in_channels=1, heads={"mask": 1}, widths=[4, 8])
    cfg = config.from_dict({"data": {"root": ".", "patch_size": [32, 32]}, "infer": {"precision": asked}})
    predictor = Predictor(net, cfg)
    dtypes = []
    last_conv = [m for m in predictor._fast_net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    last_conv.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    prediction = predictor.predict(np.random.default_rng(0).random((40, 50), dtype=np.float32))
    assert dtypes and set(dtypes) == {seen}
    assert prediction.probabilities["mask"].dtype == np.float32  # outputs stay float32 either way


def test_bf16_labels_agree_with_fp32():
    cfg = config.from_dict({"data": {"root": "/d", "patch_size": [64, 64]}, "model": {"widths": [4, 8, 16]}})
    torch.manual_seed(0)
    net = trained_like(create_model("unet", spatial_dims=2, in_channels=1, heads={"mask": 1}, widths=[4, 8, 16]))
    image = np.random.default_rng(0).normal(size=(1, 150, 130)).astype(np.float32)
    fp32 = Predictor(net, cfg, precision="fp32").predict_prepared(image)
    bf16 = Predictor(net, cfg, precision="bf16").predict_prepared(image)
    assert np.abs(fp32.probabilities["mask"] - bf16.probabilities["mask"]).max() < 0.05
    assert (fp32.labels["mask"] == bf16.labels["mask"]).mean() > 0.99


def test_resize_predicts_the_fitted_square_and_maps_back_to_the_image_size():
    from bioseg.data.resize import fit_to_square, plan_fit, restore

    net = create_model("unet", spatial_dims=2, in_channels=1, heads={"mask": 1}, widths=[4, 8])
    raw = {"data": {"root": ".", "patch_size": [32, 32], "resize": 32}, "infer": {"precision": "fp32"}}
    predictor = Predictor(net, config.from_dict(raw))
    tiles = []
    predictor.fast_net.register_forward_hook(lambda module, args, out: tiles.append(tuple(args[0].shape)))
    image = np.random.default_rng(1).random((40, 70), dtype=np.float32)
    prediction = predictor.predict(image)
    assert tiles == [(1, 1, 32, 32)]  # one tile: the whole image fitted into the 32² square
    assert prediction.probabilities["mask"].shape == (1, 40, 70) and prediction.labels["mask"].shape == (40, 70)
    prepared = predictor.prepare(image)
    fit = plan_fit(prepared.shape[1:], 32)
    square = predictor.predict_prepared(fit_to_square(prepared, fit)).probabilities["mask"]
    np.testing.assert_allclose(prediction.probabilities["mask"], restore(square, fit), atol=1e-6)
