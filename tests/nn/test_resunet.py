"""Tests for bioseg.nn.resunet: shapes, torchvision-layout weights (checked against MONAI's ResNet), stem
adaptation to other channel counts, encoder freezing, ICNR upsampling and bf16 autocast."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai.networks.nets.resnet import ResNet as MonaiResNet
from safetensors.torch import save_file

from bioseg.errors import BiosegError
from bioseg.nn import create_model, list_models
from bioseg.nn.blocks import Up, init_conv_
from bioseg.nn.resunet import ResUNet, adapt_stem_weight

# Small decoder: the encoder is fixed by the ResNet, the decoder widths only cost time here.
DW = (4, 8, 8, 16, 16)
HEADS = {"mask": 1, "classes": 3}
# torchvision's resnet18: 11,689,512 parameters, of which fc (512·1000 + 1000) = 513,000;
# resnet34: 21,797,672.
RESNET18_NO_FC = 11_689_512 - 513_000
RESNET34_NO_FC = 21_797_672 - 513_000


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny(in_channels: int = 3, **kwargs) -> ResUNet:
    kwargs.setdefault("decoder_widths", DW)
    kwargs.setdefault("heads", HEADS)
    return create_model("resunet", spatial_dims=2, in_channels=in_channels, **kwargs)


def torchvision_style_state(model: ResUNet, batches_tracked: bool = True) -> dict[str, torch.Tensor]:
    """The encoder's tensors keyed as in a torchvision checkpoint, classifier included."""
    state = {
        k: v.clone() for k, v in model.encoder.state_dict().items()
        if batches_tracked or not k.endswith("num_batches_tracked")
    }
    state["fc.weight"] = torch.randn(1000, 512)
    state["fc.bias"] = torch.randn(1000)
    return state


def with_running_stats(model: ResUNet) -> ResUNet:
    """Give the norm layers non-trivial running statistics (as a trained encoder has), then eval mode."""
    model.train()
    with torch.no_grad():
        model(torch.rand(2, model.in_channels, 64, 64) * 3 + 1)
    return model.eval()


def monai_resnet18() -> MonaiResNet:
    """MONAI's 2D ResNet-18 configured like torchvision's (7×7 stride-2 stem, 1×1 bias-free projections)."""
    return MonaiResNet(
        "basic", [2, 2, 2, 2], [64, 128, 256, 512], spatial_dims=2, n_input_channels=3, conv1_t_size=7,
        conv1_t_stride=2, num_classes=1000, bias_downsample=False,
    )


# --- shapes and registration ---------------------------------------------------------------------------


@pytest.mark.parametrize("in_channels", [1, 2, 4])
def test_output_dict_of_head_shapes(in_channels):
    assert "resunet" in list_models()
    model = tiny(in_channels)
    out = model(torch.randn(2, in_channels, 64, 96))
    assert isinstance(out, dict) and list(out) == list(HEADS)
    for name, channels in HEADS.items():
        assert out[name].shape == (2, channels, 64, 96)
        assert out[name].dtype == torch.float32 and torch.isfinite(out[name]).all()
    assert model.size_divisor == (32, 32)


def test_default_decoder_and_depth_34_forward():
    model = create_model("resunet", spatial_dims=2, in_channels=1, heads={"mask": 2}, depth=34)
    assert model.decoder_widths == (16, 32, 64, 128, 256)
    assert model(torch.randn(1, 1, 64, 64))["mask"].shape == (1, 2, 64, 64)


def test_encoder_parameter_counts_match_torchvision():
    assert sum(p.numel() for p in tiny(3).encoder_parameters()) == RESNET18_NO_FC == 11_176_512
    assert sum(p.numel() for p in tiny(3, depth=34).encoder_parameters()) == RESNET34_NO_FC
    # The stem is the only in_channels-dependent encoder tensor: 64 filters of 7×7 per channel.
    assert sum(p.numel() for p in tiny(1).encoder_parameters()) == RESNET18_NO_FC - 2 * 64 * 49


def test_encoder_parameters_are_exactly_the_encoder():
    model = tiny(1)
    expected = {id(p) for name, p in model.named_parameters() if name.startswith("encoder.")}
    assert {id(p) for p in model.encoder_parameters()} == expected
    assert 0 < len(expected) < len(list(model.parameters()))


# --- torchvision-layout weights --------------------------------------------------------------------------


def test_encoder_layout_and_features_match_monai_resnet18(tmp_path):
    """MONAI's ResNet uses torchvision's names: its weights load key for key and give the same features."""
    reference = monai_resnet18()
    assert sum(p.numel() for p in reference.parameters()) == 11_689_512  # torchvision's resnet18 figure
    model = tiny(3)
    ours, theirs = model.encoder.state_dict(), reference.state_dict()
    assert set(theirs) - set(ours) == {"fc.weight", "fc.bias"}
    assert set(ours) <= set(theirs) and len(theirs) == 122  # torchvision's resnet18 state_dict has 122 keys
    assert all(ours[k].shape == theirs[k].shape for k in ours)

    reference = with_running_stats_monai(reference)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    model = tiny(3, encoder_weights=str(tmp_path / "resnet18.pth")).eval()
    report = model.load_report
    assert report is not None and len(report.loaded) == 120 and not report.adapted
    assert set(report.ignored) == {"fc.weight", "fc.bias"}
    assert "ignored 2 (fc.bias, fc.weight)" in report.summary()

    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.encoder(x)
        y = reference.act(reference.bn1(reference.conv1(x)))
        expected = [y]
        y = reference.maxpool(y)
        for layer in (reference.layer1, reference.layer2, reference.layer3, reference.layer4):
            y = layer(y)
            expected.append(y)
    assert [f.shape[1:] for f in features] == [
        (64, 32, 32), (64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)
    ]
    for ours_f, ref_f in zip(features, expected, strict=True):
        torch.testing.assert_close(ours_f, ref_f, rtol=1e-5, atol=1e-5)


def with_running_stats_monai(reference: MonaiResNet) -> MonaiResNet:
    reference.train()
    with torch.no_grad():
        reference(torch.rand(2, 3, 64, 64) * 3 + 1)
    return reference.eval()


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_torchvision_style_file_loads_and_ignores_fc(tmp_path, fmt):
    source = with_running_stats(tiny(3))
    state = torchvision_style_state(source)
    path = tmp_path / f"resnet18.{fmt}"
    if fmt == "pth":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    model = tiny(3, encoder_weights=path)
    report = model.load_report
    assert report.ignored == {
        "fc.weight": "classifier (not used for segmentation)",
        "fc.bias": "classifier (not used for segmentation)",
    }
    assert len(report.loaded) == len(model.encoder.state_dict()) == 120
    assert report.adapted == [] and report.kept == [] and report.prefix == ""
    for key, value in model.encoder.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    assert report.to_dict()["summary"] == report.summary()


def test_old_checkpoint_without_num_batches_tracked_and_prefixed_state(tmp_path):
    source = tiny(3)
    torch.save(torchvision_style_state(source, batches_tracked=False), tmp_path / "old.pth")
    report = tiny(3).load_encoder_weights(tmp_path / "old.pth")
    assert len(report.kept) == 20 and all(k.endswith("num_batches_tracked") for k in report.kept)
    assert len(report.loaded) == 100

    # A whole ResUNet state dict, wrapped as a Lightning-style checkpoint: the encoder. prefix is found.
    torch.save({"state_dict": source.state_dict()}, tmp_path / "resunet.ckpt")
    model = tiny(3)
    report = model.load_encoder_weights(tmp_path / "resunet.ckpt")
    assert report.prefix == "encoder." and len(report.loaded) == 120
    assert report.ignored and all(not k.startswith("encoder.") for k in report.ignored)
    torch.testing.assert_close(model.encoder.conv1.weight, source.encoder.conv1.weight, rtol=0, atol=0)


@pytest.mark.parametrize("in_channels", [1, 2, 4])
def test_stem_adaptation_preserves_output_for_replicated_grey(tmp_path, in_channels):
    """Fine-tuning rule: an image of in_channels copies of a grey image gives the 3-channel model's output
    on the grey image repeated as RGB."""
    rgb = with_running_stats(tiny(3))
    torch.save(torchvision_style_state(rgb), tmp_path / "rgb.pth")
    model = tiny(in_channels, encoder_weights=tmp_path / "rgb.pth")
    assert model.load_report.adapted == ["conv1.weight"]
    assert model.load_report.input_channels == (3, in_channels)
    decoder = {k: v for k, v in rgb.state_dict().items() if not k.startswith("encoder.")}
    missing, unexpected = model.load_state_dict(decoder, strict=False)
    assert not unexpected and all(k.startswith("encoder.") for k in missing)
    model.eval()
    grey = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        ours = model(grey.repeat(1, in_channels, 1, 1))
        expected = rgb(grey.repeat(1, 3, 1, 1))
    for name in HEADS:
        torch.testing.assert_close(ours[name], expected[name], rtol=1e-4, atol=1e-5)


def test_adapt_stem_weight_rule():
    w = torch.randn(64, 3, 7, 7)
    out = adapt_stem_weight(w, 4)
    assert out.shape == (64, 4, 7, 7)
    for c in range(4):
        torch.testing.assert_close(out[:, c], w.mean(dim=1) * 3 / 4)
    torch.testing.assert_close(adapt_stem_weight(w, 1)[:, 0], w.sum(dim=1))


# --- errors ------------------------------------------------------------------------------------------------


def test_weight_file_errors(tmp_path):
    with pytest.raises(BiosegError, match="does not exist"):
        tiny(3, encoder_weights=tmp_path / "nope.pth")
    with pytest.raises(BiosegError, match="is a folder"):
        tiny(3, encoder_weights=tmp_path)
    torch.save(torchvision_style_state(tiny(3)), tmp_path / "r18.pth")
    with pytest.raises(BiosegError, match="ResNet-18: set depth: 18"):
        tiny(3, depth=34, encoder_weights=tmp_path / "r18.pth")
    torch.save({"weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(BiosegError, match="holds no ResNet"):
        tiny(3, encoder_weights=tmp_path / "other.pth")


def test_constructor_and_input_errors():
    with pytest.raises(BiosegError, match="2D only.*use model.name: unet"):
        create_model("resunet", spatial_dims=3, in_channels=1, heads=HEADS)
    with pytest.raises(BiosegError, match="depth is 50"):
        tiny(1, depth=50)
    with pytest.raises(BiosegError, match="decoder_widths"):
        tiny(1, decoder_widths=[8, 16, 32])
    with pytest.raises(BiosegError, match="unknown option 'encoder_weight'.*encoder_weights"):
        tiny(1, encoder_weight="x.pth")
    model = tiny(1)
    with pytest.raises(BiosegError, match="size_divisor"):
        model(torch.randn(1, 1, 64, 48))
    with pytest.raises(BiosegError, match="expects 1"):
        model(torch.randn(1, 3, 64, 64))


# --- training behaviour ------------------------------------------------------------------------------------


def test_freeze_encoder_stops_gradients_to_encoder_only():
    model = tiny(1)
    model.freeze_encoder(True)
    assert model.encoder_frozen
    out = model(torch.randn(2, 1, 64, 64))
    sum(o.square().mean() for o in out.values()).backward()
    for name, p in model.named_parameters():
        if name.startswith("encoder."):
            assert p.grad is None, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name

    model.zero_grad(set_to_none=True)
    model.freeze_encoder(False)
    assert not model.encoder_frozen
    out = model(torch.randn(2, 1, 64, 64))
    sum(o.square().mean() for o in out.values()).backward()
    assert model.encoder.conv1.weight.grad is not None and model.encoder.conv1.weight.grad.abs().sum() > 0


def _is_blockwise_constant(y: torch.Tensor) -> bool:
    nearest = F.interpolate(y[..., ::2, ::2], scale_factor=2, mode="nearest")
    return torch.allclose(y, nearest, atol=1e-6)


def test_icnr_pixel_shuffle_has_no_checkerboard_at_init():
    model = tiny(1)
    assert len(model.ups) == 5
    for up in model.ups:
        assert isinstance(up, Up) and up.mode == "pixelshuffle"
        x = torch.randn(1, up.conv.in_channels, 5, 6)
        with torch.no_grad():
            assert _is_blockwise_constant(up(x))
    # Control: the same check fails for a plain (He) initialisation of the same layer.
    init_conv_(model.ups[0].conv, "relu")
    with torch.no_grad():
        assert not _is_blockwise_constant(model.ups[0](torch.randn(1, model.ups[0].conv.in_channels, 5, 6)))


def test_bf16_autocast_forward_and_backward():
    model = tiny(2).eval()
    x = torch.randn(1, 2, 64, 64)
    with torch.no_grad():
        reference = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    for name in HEADS:
        assert out[name].dtype == torch.bfloat16 and torch.isfinite(out[name]).all()
        err = (out[name].float() - reference[name]).norm() / reference[name].norm()
        assert err < 0.05, (name, float(err))
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = sum(o.float().square().mean() for o in model(x).values())
    loss.backward()
    assert torch.isfinite(model.encoder.conv1.weight.grad).all()


@pytest.mark.parametrize("norm", ["group", "none"])
def test_other_norms_keep_affine_and_drop_statistics(tmp_path, norm):
    torch.save(torchvision_style_state(with_running_stats(tiny(3))), tmp_path / "r18.pth")
    model = tiny(3, norm=norm, encoder_weights=tmp_path / "r18.pth")
    report = model.load_report
    assert any(k.endswith("running_mean") for k in report.ignored)
    assert ("bn1.weight" in report.loaded) == (norm == "group")
    assert model(torch.randn(1, 3, 64, 64))["mask"].shape == (1, 1, 64, 64)
