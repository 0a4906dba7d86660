"""Tests for bioseg.nn: UNet shapes in 2D/3D, heads, size checks, upsampling modes and the model factory."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from monai.networks.utils import pixelshuffle as monai_pixelshuffle
from torch import nn

from bioseg.errors import BiosegError
from bioseg.nn import (
    UNet,
    Up,
    count_parameters,
    create_model,
    group_count,
    list_models,
    voxel_shuffle,
)
from bioseg.nn.blocks import init_conv_

NORMS = ["batch", "instance", "group", "none"]
UPSAMPLES = ["transpose", "interp", "pixelshuffle"]
# Tiny configurations: (widths, input spatial size) per spatial_dims.
TINY = {2: ([4, 8, 16], (32, 48)), 3: ([4, 8], (16, 16, 24))}


def tiny_model(spatial_dims: int, **kwargs) -> UNet:
    kwargs.setdefault("widths", TINY[spatial_dims][0])
    heads = kwargs.pop("heads", {"mask": 1, "boundary": 3})
    return create_model("unet", spatial_dims=spatial_dims, in_channels=2, heads=heads, **kwargs)


def tiny_input(spatial_dims: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 2, *TINY[spatial_dims][1], generator=g)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --- shapes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("upsample", UPSAMPLES)
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_output_is_dict_of_head_shapes(spatial_dims, norm, residual, upsample):
    model = tiny_model(spatial_dims, norm=norm, residual=residual, upsample=upsample)
    x = tiny_input(spatial_dims)
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, dict)
    assert list(out) == ["mask", "boundary"]
    assert out["mask"].shape == (2, 1, *x.shape[2:])
    assert out["boundary"].shape == (2, 3, *x.shape[2:])
    assert all(torch.isfinite(v).all() for v in out.values())


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_single_head_still_returns_dict(spatial_dims):
    model = tiny_model(spatial_dims, heads={"mask": 2})
    out = model(tiny_input(spatial_dims))
    assert isinstance(out, dict) and list(out) == ["mask"]
    assert out["mask"].shape == (2, 2, *TINY[spatial_dims][1])


def test_two_heads_are_independent_outputs():
    model = tiny_model(2, heads={"semantic": 2, "edges": 1}).eval()
    out = model(tiny_input(2))
    assert set(out) == {"semantic", "edges"}
    # Each head has its own 1×1 conv: changing one head's weights leaves the other output unchanged.
    with torch.no_grad():
        model.head_convs["edges"].weight.add_(1.0)
    out2 = model(tiny_input(2))
    assert torch.equal(out["semantic"], out2["semantic"])
    assert not torch.allclose(out["edges"], out2["edges"])


def test_default_size_divisor_is_two_per_level():
    assert UNet(2, 1, {"m": 1}, widths=[4, 8, 16, 32]).size_divisor == (8, 8)
    assert UNet(3, 1, {"m": 1}, widths=[4, 8]).size_divisor == (2, 2, 2)
    assert UNet(2, 1, {"m": 1}, widths=[4]).size_divisor == (1, 1)


@pytest.mark.parametrize("upsample", UPSAMPLES)
@pytest.mark.parametrize("downsample", ["maxpool", "conv"])
def test_anisotropic_pool_sizes_3d(upsample, downsample):
    model = create_model(
        "unet",
        spatial_dims=3,
        in_channels=1,
        heads={"mask": 1},
        widths=[4, 4, 8, 8],
        pool_sizes=[[1, 2, 2], [1, 2, 2], [2, 2, 2]],
        upsample=upsample,
        downsample=downsample,
    )
    assert model.size_divisor == (2, 8, 8)
    # The encoder features must have the sizes the per-level factors imply.
    seen = []
    hooks = [enc.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[2:]))) for enc in model.encoders]
    out = model(torch.randn(2, 1, 6, 16, 24))
    for h in hooks:
        h.remove()
    assert seen == [(6, 16, 24), (6, 8, 12), (6, 4, 6), (3, 2, 3)]
    assert out["mask"].shape == (2, 1, 6, 16, 24)
    with pytest.raises(BiosegError, match=r"\(2, 8, 8\)"):
        model(torch.randn(1, 1, 5, 16, 24))


def test_pool_sizes_accept_one_int_per_level():
    model = UNet(3, 1, {"m": 1}, widths=[4, 4, 4], pool_sizes=[[1, 3, 2], 2])
    assert model.size_divisor == (2, 6, 4)
    assert model(torch.randn(1, 1, 2, 12, 8))["m"].shape == (1, 1, 2, 12, 8)


@pytest.mark.parametrize("pool_sizes", [[[1, 2, 2]], [[1, 2], [2, 2, 2]], [[0, 2, 2], 2], 2])
def test_bad_pool_sizes_raise(pool_sizes):
    with pytest.raises(BiosegError, match="pool_sizes"):
        UNet(3, 1, {"m": 1}, widths=[4, 8, 16], pool_sizes=pool_sizes)


# --- input checks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_wrong_input_size_raises_with_divisor_and_hint(spatial_dims):
    model = UNet(spatial_dims, 1, {"m": 1}, widths=[4, 8, 16])  # divisor 4 per axis
    size = (33, 48) if spatial_dims == 2 else (17, 16, 24)
    with pytest.raises(BiosegError) as info:
        model(torch.randn(1, 1, *size))
    msg = str(info.value)
    assert str(size) in msg and str((4,) * spatial_dims) in msg and "pads" in msg


def test_wrong_channels_or_rank_raise():
    model = UNet(2, 3, {"m": 1}, widths=[4, 8])
    with pytest.raises(BiosegError, match="2 channels"):
        model(torch.randn(1, 2, 8, 8))
    with pytest.raises(BiosegError, match="2D model"):
        model(torch.randn(1, 3, 8, 8, 8))


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"norm": "bacth"}, "Did you mean 'batch'"),
        ({"upsample": "pixel_shuffle"}, "Did you mean 'pixelshuffle'"),
        ({"widths": []}, "widths"),
        ({"dropout": 1.5}, "dropout"),
        ({"heads": {}}, "heads"),
        ({"heads": {"mask": 0}}, "mask"),
        ({"heads": {"a.b": 1}}, "head name"),
        ({"heads": {"keys": 1}}, "head name"),
        ({"spatial_dims": 4}, "spatial_dims"),
    ],
)
def test_bad_options_raise(kwargs, pattern):
    args = {"spatial_dims": 2, "in_channels": 1, "heads": {"m": 1}, "widths": [4, 8]} | kwargs
    with pytest.raises(BiosegError, match=pattern):
        UNet(**args)


# --- factory -----------------------------------------------------------------------------------------


def test_registry_and_unknown_names():
    assert "unet" in list_models()
    with pytest.raises(BiosegError, match="Did you mean 'unet'"):
        create_model("unte", spatial_dims=2, in_channels=1, heads={"m": 1})
    with pytest.raises(BiosegError) as info:
        create_model("unet", spatial_dims=2, in_channels=1, heads={"m": 1}, widht=[4, 8])
    msg = str(info.value)
    assert "'widht'" in msg and "Did you mean 'widths'" in msg
    for key in ("widths", "norm", "residual", "upsample", "dropout", "pool_sizes"):
        assert key in msg


def test_model_config_section_maps_onto_create_model():
    from bioseg.config import ModelConfig, from_dict
    from bioseg.nn.bundle import build_network

    model_cfg = {"spatial_dims": 3, "widths": [4, 8], "norm": "group", "residual": True, "upsample": "interp"}
    cfg = from_dict({"data": {"root": "/d", "patch_size": [4, 8, 8], "classes": ["a", "b", "c"]}, "model": model_cfg})
    assert isinstance(cfg.model, ModelConfig)
    model = build_network(cfg)
    assert model(torch.randn(1, 1, 4, 6, 8))["mask"].shape == (1, 3, 4, 6, 8)


def test_model_config_choices_are_the_unet_choices():
    from typing import get_args

    from bioseg.config import ModelConfig
    from bioseg.nn.blocks import ACTIVATIONS, DOWNSAMPLES, NORMS, UPSAMPLES

    fields = ModelConfig.model_fields
    for key, choices in (("downsample", DOWNSAMPLES), ("activation", ACTIVATIONS), ("upsample", UPSAMPLES)):
        assert get_args(fields[key].annotation) == choices, key
    assert get_args(get_args(fields["norm"].annotation)[0]) == NORMS


@pytest.mark.parametrize(
    ("model_cfg", "layer", "default_layer"),
    [({"activation": "relu"}, nn.ReLU, nn.LeakyReLU), ({"downsample": "conv"}, nn.Conv2d, nn.MaxPool2d)],
)
def test_activation_and_downsample_keys_reach_the_unet(model_cfg, layer, default_layer):
    from bioseg.config import from_dict
    from bioseg.nn.bundle import build_network

    def layers(model: nn.Module) -> set[type]:
        part = model.downs if "downsample" in model_cfg else model.encoders
        return {type(m) for m in part.modules()}

    data = {"root": "/d", "patch_size": [16, 16]}
    default = build_network(from_dict({"data": data, "model": {"widths": [4, 8]}}))
    changed = build_network(from_dict({"data": data, "model": {"widths": [4, 8], **model_cfg}}))
    assert default_layer in layers(default) and layer not in layers(default)
    assert layer in layers(changed) and default_layer not in layers(changed)
    assert changed(torch.randn(1, 1, 16, 16))["mask"].shape == (1, 1, 16, 16)


def test_unet_only_keys_are_refused_for_resunet():
    from bioseg.config import from_dict
    from bioseg.nn.bundle import build_network

    model = {"name": "resunet", "activation": "relu"}
    cfg = from_dict({"data": {"root": "/d", "patch_size": [32, 32]}, "model": model})
    with pytest.raises(BiosegError, match="does not use model.activation"):
        build_network(cfg)


def test_count_parameters_matches_hand_count():
    # widths [4], no norm (so convs have biases): conv 1→4 3×3, conv 4→4 3×3, head 1×1 4→2.
    model = UNet(2, 1, {"m": 2}, widths=[4], norm="none")
    expected = (1 * 4 * 9 + 4) + (4 * 4 * 9 + 4) + (4 * 2 + 2)
    assert count_parameters(model) == expected
    model.head_convs["m"].requires_grad_(False)
    assert count_parameters(model) == expected - 10
    assert count_parameters(model, trainable_only=False) == expected


# --- training behaviour ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"norm": "batch", "upsample": "transpose"},
        {"norm": "instance", "residual": True, "upsample": "interp", "downsample": "conv"},
        {"norm": "group", "residual": True, "upsample": "pixelshuffle", "dropout": 0.1},
        {"norm": "none", "upsample": "pixelshuffle", "activation": "relu"},
    ],
)
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_gradients_reach_every_parameter(spatial_dims, options):
    model = tiny_model(spatial_dims, **options)
    out = model(tiny_input(spatial_dims))
    loss = sum((v * torch.randn_like(v)).sum() for v in out.values())
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("upsample", UPSAMPLES)
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_bf16_autocast_close_to_fp32(spatial_dims, upsample):
    model = tiny_model(spatial_dims, upsample=upsample, norm="group", residual=True).eval()
    x = tiny_input(spatial_dims)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    for name in ref:
        assert low[name].dtype == torch.bfloat16  # autocast really ran the convs in bf16
        assert rel_err(low[name], ref[name]) < 0.05, name


@pytest.mark.parametrize("upsample", UPSAMPLES)
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_channels_last_gives_same_output(spatial_dims, upsample):
    fmt = torch.channels_last if spatial_dims == 2 else torch.channels_last_3d
    model = tiny_model(spatial_dims, upsample=upsample).eval()
    x = tiny_input(spatial_dims)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=fmt)
        out = model(x.contiguous(memory_format=fmt))
    for name in ref:
        torch.testing.assert_close(out[name], ref[name], rtol=1e-4, atol=1e-5)


def test_eval_is_deterministic_and_dropout_only_in_training():
    model = tiny_model(2, dropout=0.5)
    x = tiny_input(2)
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
    for name in a:
        assert torch.equal(a[name], b[name])
    model.train()
    with torch.no_grad():
        c, d = model(x), model(x)
    assert not torch.equal(c["mask"], d["mask"])  # dropout is live in training


# --- blocks ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "groups"), [(4, 4), (8, 8), (16, 8), (12, 6), (9, 3), (11, 1), (1, 1)])
def test_group_count(channels, groups):
    assert group_count(channels) == groups
    assert channels % groups == 0


def test_group_norm_falls_back_for_awkward_widths():
    model = UNet(2, 1, {"m": 1}, widths=[12, 9], norm="group")
    groups = {m.num_channels: m.num_groups for m in model.modules() if isinstance(m, nn.GroupNorm)}
    assert groups == {12: 6, 9: 3}
    assert model(torch.randn(2, 1, 8, 10))["m"].shape == (2, 1, 8, 10)


@pytest.mark.parametrize("factor", [2, 3])
def test_voxel_shuffle_matches_torch_pixel_shuffle_2d(factor):
    x = torch.randn(2, 3 * factor**2, 5, 7)
    torch.testing.assert_close(voxel_shuffle(x, (factor, factor)), F.pixel_shuffle(x, factor), rtol=0, atol=0)


def test_voxel_shuffle_matches_monai_3d():
    x = torch.randn(2, 3 * 8, 3, 4, 5)
    torch.testing.assert_close(voxel_shuffle(x, (2, 2, 2)), monai_pixelshuffle(x, 3, 2), rtol=0, atol=0)


def test_voxel_shuffle_anisotropic_index_mapping():
    f = (1, 2, 3)
    x = torch.randn(1, 2 * math.prod(f), 2, 3, 2)
    y = voxel_shuffle(x, f)
    assert y.shape == (1, 2, 2, 6, 6)
    for c in range(2):
        for i in range(f[0]):
            for j in range(f[1]):
                for k in range(f[2]):
                    src = x[0, c * 6 + (i * f[1] + j) * f[2] + k]
                    assert torch.equal(y[0, c, i :: f[0], j :: f[1], k :: f[2]], src)


def test_voxel_shuffle_keeps_channels_last():
    x = torch.randn(1, 8, 4, 5).contiguous(memory_format=torch.channels_last)
    y = voxel_shuffle(x, (2, 2))
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, F.pixel_shuffle(x.contiguous(), 2))


def _nearest_from_top_left(y: torch.Tensor, factors: tuple[int, ...]) -> torch.Tensor:
    """Nearest-neighbour upsampling of the top-left sub-pixel of every block."""
    corner = y[(..., *(slice(None, None, f) for f in factors))]
    return F.interpolate(corner, scale_factor=factors, mode="nearest")


@pytest.mark.parametrize(("spatial_dims", "pool_sizes"), [(2, None), (3, None), (3, [[1, 2, 2], [2, 2, 2]])])
def test_pixelshuffle_icnr_has_no_checkerboard_at_init(spatial_dims, pool_sizes):
    model = UNet(spatial_dims, 1, {"m": 1}, widths=[4, 8, 8], upsample="pixelshuffle", pool_sizes=pool_sizes)
    for up in model.ups:  # as initialised by the UNet, not re-initialised here
        factors = up.factors
        x = torch.randn(2, up.conv.in_channels, *(3,) * spatial_dims)
        with torch.no_grad():
            y = up(x)
            # Every block of sub-pixels is constant: the output equals nearest upsampling ...
            torch.testing.assert_close(y, _nearest_from_top_left(y, factors), rtol=0, atol=0)
            # ... of the conv with one kernel per output channel (an independent computation).
            r = math.prod(factors)
            sub = F.conv2d if spatial_dims == 2 else F.conv3d
            low = sub(x, up.conv.weight[::r], up.conv.bias[::r], padding=1)
            torch.testing.assert_close(y, F.interpolate(low, scale_factor=factors, mode="nearest"))
    # Control: with a plain (non-ICNR) init the same check fails, so the test can tell them apart.
    up = model.ups[0]
    init_conv_(up.conv)
    y = up(torch.randn(2, up.conv.in_channels, *(3,) * spatial_dims)).detach()
    assert not torch.allclose(y, _nearest_from_top_left(y, up.factors))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_interp_upsample_equals_interpolate_then_conv(spatial_dims):
    # The 1×1 conv runs before interpolation for speed; both orders must give the same result.
    factors = (2,) * spatial_dims if spatial_dims == 2 else (1, 2, 2)
    up = Up(spatial_dims, 6, 3, factors, mode="interp")
    nn.init.normal_(up.conv.bias)
    x = torch.randn(2, 6, *(4,) * spatial_dims)
    mode = "bilinear" if spatial_dims == 2 else "trilinear"
    big = F.interpolate(x, scale_factor=factors, mode=mode, align_corners=False)
    torch.testing.assert_close(up(x), up.conv(big), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_transpose_upsample_scales_by_factors(spatial_dims):
    factors = (2, 3) if spatial_dims == 2 else (1, 2, 3)
    up = Up(spatial_dims, 4, 2, factors, mode="transpose")
    y = up(torch.randn(1, 4, *(5,) * spatial_dims))
    assert y.shape == (1, 2, *(5 * f for f in factors))
