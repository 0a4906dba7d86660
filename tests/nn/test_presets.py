"""Model presets: registration, parameter budget, outputs in 2D and 3D, and UNet overrides."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bioseg.errors import BiosegError
from bioseg.nn import UNet, count_parameters, create_model, list_models, model_options
from bioseg.nn.presets import PRESETS

WING_HEADS = {"wing": 1, "veins": 1, "spots": 1, "domains": 4}


def test_presets_are_registered_with_every_unet_option() -> None:
    assert {"hoppernet_lite", "hoppernet"} <= set(list_models())
    for name in ("hoppernet_lite", "hoppernet"):
        assert model_options(name) == model_options("unet")


def test_hoppernet_lite_has_about_100k_parameters_for_the_wing_model() -> None:
    lite = create_model("hoppernet_lite", spatial_dims=2, in_channels=3, heads=WING_HEADS)
    n_lite = count_parameters(lite)
    assert 90_000 <= n_lite <= 115_000
    assert n_lite == 109_415  # the number the module documents
    wide = create_model("hoppernet", spatial_dims=2, in_channels=3, heads=WING_HEADS)
    # 4x the widths: about 16x the parameters of the convolutions.
    assert 12 * n_lite < count_parameters(wide) < 20 * n_lite
    assert count_parameters(wide) == 1_737_095


def test_preset_is_a_unet_with_its_defaults() -> None:
    model = create_model("hoppernet_lite", spatial_dims=2, in_channels=3, heads=WING_HEADS)
    assert isinstance(model, UNet)
    assert model.widths == tuple(PRESETS["hoppernet_lite"]["widths"])
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    # Same parameter layout as the UNet spelled out, so weights load across the two.
    plain = UNet(2, 3, WING_HEADS, widths=(8, 16, 24, 32, 32), norm="group")
    plain.load_state_dict(model.state_dict())


@pytest.mark.parametrize(("spatial_dims", "spatial"), [(2, (32, 48)), (3, (16, 16, 32))])
def test_dict_outputs_2d_and_3d(spatial_dims: int, spatial: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = create_model("hoppernet_lite", spatial_dims=spatial_dims, in_channels=3, heads=WING_HEADS)
    model.train()  # GroupNorm: a batch of one works in training mode too
    out = model(torch.randn(1, 3, *spatial))
    assert isinstance(out, dict) and list(out) == list(WING_HEADS)
    for head, channels in WING_HEADS.items():
        assert out[head].shape == (1, channels, *spatial)
        assert torch.isfinite(out[head]).all()
    sum(o.mean() for o in out.values()).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_wide_preset_outputs() -> None:
    model = create_model("hoppernet", spatial_dims=2, in_channels=1, heads={"mask": 1}).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 16, 32))
    assert out["mask"].shape == (2, 1, 16, 32)


def test_overrides_of_unet_options() -> None:
    options = {"widths": (4, 8), "norm": "batch", "dropout": 0.1}
    small = create_model("hoppernet_lite", spatial_dims=2, in_channels=3, heads=WING_HEADS, **options)
    assert small.widths == (4, 8) and small.size_divisor == (2, 2)
    assert any(isinstance(m, nn.BatchNorm2d) for m in small.modules())
    assert count_parameters(small) < 10_000
    pools = [[1, 2, 2]] + [[2, 2, 2]] * 3
    aniso = create_model("hoppernet_lite", spatial_dims=3, in_channels=1, heads={"mask": 1}, pool_sizes=pools)
    assert aniso.size_divisor == (8, 16, 16)


def test_unknown_options_and_bad_values_raise() -> None:
    with pytest.raises(BiosegError, match="Did you mean 'widths'"):
        create_model("hoppernet_lite", spatial_dims=2, in_channels=3, heads=WING_HEADS, width=(4, 8))
    with pytest.raises(BiosegError, match="Did you mean 'hoppernet_lite'"):
        create_model("hopernet_lite", spatial_dims=2, in_channels=3, heads=WING_HEADS)
    with pytest.raises(BiosegError, match="norm"):
        create_model("hoppernet", spatial_dims=2, in_channels=3, heads=WING_HEADS, norm="layer")
    from bioseg.nn.presets import hoppernet_lite

    with pytest.raises(BiosegError, match="Did you mean 'dropout'"):
        hoppernet_lite(spatial_dims=2, in_channels=3, heads=WING_HEADS, drop_out=0.1)
