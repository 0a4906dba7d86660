"""The network that predicts the tiles: folded BatchNorm, and oneDNN fusions in float32 on a CPU."""

import pytest
import torch
from helpers import trained_like

from bioseg import config
from bioseg.inference import fast_net
from bioseg.inference.fast_net import (
    FusedConvBlock,
    FusedUpDecoder,
    fast_network,
    fold_batchnorm,
    fuse_onednn,
    memory_format,
)
from bioseg.inference.predictor import Predictor
from bioseg.nn import create_model
from bioseg.nn.blocks import ConvBlock

needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch has no oneDNN")


@pytest.mark.parametrize(
    "name, dims, kwargs, shape",
    [
        ("unet", 2, {"widths": [4, 8, 16]}, (2, 1, 32, 48)),
        ("unet", 3, {"widths": [4, 8], "residual": True}, (1, 1, 8, 16, 16)),
        ("resunet", 2, {"decoder_widths": [4, 8, 8, 16, 16]}, (1, 1, 64, 64)),
    ],
)
def test_folded_network_gives_the_same_output(name, dims, kwargs, shape):
    net = trained_like(create_model(name, spatial_dims=dims, in_channels=1, heads={"m": 2}, **kwargs))
    folded = fold_batchnorm(net)
    remaining = [m for m in folded.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert not remaining  # every BatchNorm that follows a conv was folded away
    x = torch.randn(*shape)
    with torch.no_grad():
        assert torch.allclose(net(x)["m"], folded(x)["m"], atol=1e-4)
    assert any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())  # caller's copy intact


NETWORKS = [
    ("unet", 2, {"widths": [4, 8, 16]}, (2, 1, 32, 48)),
    ("unet", 2, {"widths": [4, 8], "activation": "relu", "norm": "none"}, (1, 1, 24, 40)),
    ("unet", 3, {"widths": [4, 8]}, (1, 1, 8, 16, 16)),
    ("unet", 3, {"widths": [4, 8, 16], "pool_sizes": [[1, 2, 2], [2, 2, 2]]}, (1, 1, 6, 20, 12)),
    ("unet", 2, {"widths": [4, 8], "upsample": "interp"}, (1, 1, 16, 24)),
    ("resunet", 2, {"decoder_widths": [4, 8, 8, 16, 16]}, (1, 1, 64, 64)),
]


@needs_onednn
@pytest.mark.parametrize("name, dims, kwargs, shape", NETWORKS)
def test_fused_network_predicts_as_the_folded_one(name, dims, kwargs, shape):
    torch.manual_seed(0)
    net = trained_like(create_model(name, spatial_dims=dims, in_channels=1, heads={"m": 2}, **kwargs))
    folded = fold_batchnorm(net).to(memory_format=memory_format(dims))
    fused = fuse_onednn(folded, dims)
    blocks = [m for m in fused.modules() if isinstance(m, FusedConvBlock)]
    assert blocks and not any(type(m) is ConvBlock for m in fused.modules())  # every block fused
    x = torch.randn(*shape).contiguous(memory_format=memory_format(dims))
    with torch.inference_mode():
        want, got = folded(x)["m"], fused(x)["m"]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


@needs_onednn
@pytest.mark.parametrize("dims, pool_sizes", [(2, None), (3, None), (3, [[1, 2, 2]])])
def test_the_upsampling_is_folded_into_the_decoder_of_a_unet(dims, pool_sizes):
    torch.manual_seed(0)
    net = trained_like(create_model("unet", spatial_dims=dims, in_channels=1, heads={"m": 1}, widths=[4, 8],
                                    pool_sizes=pool_sizes))  # fmt: skip
    for up in net.ups:  # a bias that matters at the tile borders
        torch.nn.init.normal_(up.conv.bias, std=0.5)
    folded = fold_batchnorm(net).to(memory_format=memory_format(dims))
    fused = fuse_onednn(folded, dims)
    assert isinstance(fused.decoders[0], FusedUpDecoder) and isinstance(fused.ups[0], torch.nn.Identity)
    for shape in ((12, 20), (8, 6)) if dims == 2 else ((4, 8, 12), (2, 6, 4)):  # each shape its own borders
        x = torch.randn(2, 1, *shape).contiguous(memory_format=memory_format(dims))
        with torch.inference_mode():
            want, got = folded(x)["m"], fused(x)["m"]
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


@needs_onednn
def test_border_corrections_are_kept_for_the_latest_tile_shapes_only():
    net = fold_batchnorm(create_model("unet", spatial_dims=2, in_channels=1, heads={"m": 1}, widths=[4, 8]))
    fused = fuse_onednn(net.to(memory_format=torch.channels_last), 2)
    with torch.inference_mode():
        for size in range(8, 8 + 2 * 12, 2):  # twelve image sizes
            fused(torch.randn(1, 1, size, 10).contiguous(memory_format=torch.channels_last))
    kept = fused.decoders[0]._borders
    assert len(kept) == 8 and (30, 10) in kept and (8, 10) not in kept  # sizes 8, 10, …, 30: the last 8 kept


@needs_onednn
def test_fused_block_convolves_the_two_halves_instead_of_their_concatenation():
    torch.manual_seed(0)
    block = ConvBlock(2, 6, 5, norm="none").eval()
    fused = FusedConvBlock(block)
    a, b = torch.randn(2, 4, 12, 10), torch.randn(2, 2, 12, 10)
    with torch.inference_mode():
        want = block(torch.cat([a, b], dim=1))
        torch.testing.assert_close(fused.forward_concat(a, b), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(block.forward_concat(a, b), want)
        torch.testing.assert_close(fused(torch.cat([a, b], dim=1)), want, rtol=1e-5, atol=1e-5)


def test_blocks_the_fusion_cannot_express_stay_as_they_are():
    residual = ConvBlock(2, 4, 4, norm="none", residual=True).eval()
    normed = ConvBlock(2, 4, 4, norm="instance").eval()
    assert not FusedConvBlock.fusable(residual) and not FusedConvBlock.fusable(normed)
    assert FusedConvBlock.fusable(ConvBlock(2, 4, 4, norm="none").eval())


@needs_onednn
def test_a_fused_network_that_disagrees_is_not_used(monkeypatch):
    net = fold_batchnorm(create_model("unet", spatial_dims=2, in_channels=1, heads={"m": 1}, widths=[4, 8]))
    monkeypatch.setattr(FusedConvBlock, "forward", lambda self, x: self.conv2(self.conv1(x)))  # no activation
    assert fuse_onednn(net, 2) is net


def test_a_fused_network_that_cannot_run_is_not_used(monkeypatch):
    net = fold_batchnorm(create_model("unet", spatial_dims=2, in_channels=1, heads={"m": 1}, widths=[4, 8]))

    def unsupported(*args, **kwargs):
        raise RuntimeError("oneDNN: unsupported")

    monkeypatch.setattr(FusedConvBlock, "_conv_act", staticmethod(unsupported))
    assert fuse_onednn(net, 2) is net
    monkeypatch.setattr(fast_net.torch.backends.mkldnn, "is_available", lambda: False)
    assert fuse_onednn(net, 2) is net


@needs_onednn
@pytest.mark.parametrize("precision, fused", [("fp32", True), ("bf16", False)])
def test_the_predictor_fuses_for_float32_on_a_cpu_only(precision, fused):
    cfg = config.from_dict({"data": {"root": ".", "patch_size": [32, 32]}, "model": {"widths": [4, 8]}})
    net = create_model("unet", spatial_dims=2, in_channels=1, heads={"mask": 1}, widths=[4, 8])
    predictor = Predictor(net, cfg, precision=precision)
    assert isinstance(predictor.fast_net.encoders[0], FusedConvBlock) == fused
    assert type(net.encoders[0]) is ConvBlock  # the caller's network is untouched
    on_gpu = fast_network(net, 2, torch.device("meta"), None)  # not a CPU: folded, never fused
    assert type(on_gpu.encoders[0]) is ConvBlock
