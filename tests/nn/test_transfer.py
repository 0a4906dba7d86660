"""Initialising a model from another run's weights: matching tensors, the adapted input conv, readers."""

import json

import pytest
import torch
from safetensors.torch import save_file

from bioseg.errors import BiosegError
from bioseg.nn import create_model
from bioseg.nn.transfer import (
    NOT_IN_MODEL,
    NOT_IN_SOURCE,
    adapt_input_channels,
    input_conv_keys,
    read_state,
    transfer_weights,
)

WIDTHS = [4, 8]
SHAPES = {2: (2, 18, 20), 3: (1, 6, 8, 10)}  # (N, *spatial), divisible by the 2-level UNet's factor 2


def unet(spatial_dims, in_channels, heads=None, seed=0, **kw):
    torch.manual_seed(seed)
    return create_model(
        "unet", spatial_dims=spatial_dims, in_channels=in_channels, heads=heads or {"mask": 1},
        widths=WIDTHS, **kw,
    )


def trained_like(model, spatial_dims, seed=1):
    """Random affine/bias parameters and non-trivial BatchNorm running statistics, so that a copy that
    missed any tensor would give other outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if "norm" in name else 0.0))
        model.train()
        n, *spatial = SHAPES[spatial_dims]
        for _ in range(2):
            model(torch.randn(n, model.in_channels, *spatial, generator=g) * 2 + 1)
    return model.eval()


def image(spatial_dims, channels=1, seed=2):
    n, *spatial = SHAPES[spatial_dims]
    return torch.rand(n, channels, *spatial, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_same_architecture_loads_everything_and_gives_identical_outputs(spatial_dims):
    source = trained_like(unet(spatial_dims, 1, seed=0), spatial_dims)
    model = unet(spatial_dims, 1, seed=5).eval()
    x = image(spatial_dims)
    with torch.no_grad():
        assert not torch.allclose(model(x)["mask"], source(x)["mask"])
        report = transfer_weights(model, source.state_dict(), strict_shapes=True)
        assert torch.equal(model(x)["mask"], source(x)["mask"])
    assert report.loaded == list(source.state_dict())
    assert report.adapted == [] and report.skipped == {} and report.input_channels is None
    assert report.summary() == f"loaded {len(report.loaded)} tensors, adapted 0, skipped 0"


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("residual", [False, True])
def test_one_to_two_channels_adapts_first_conv_and_keeps_outputs(spatial_dims, residual):
    source = trained_like(unet(spatial_dims, 1, residual=residual), spatial_dims)
    model = unet(spatial_dims, 2, seed=5, residual=residual).eval()
    report = transfer_weights(model, source.state_dict())

    first = ["encoders.0.conv1.weight"] + (["encoders.0.skip.weight"] if residual else [])
    assert report.adapted == first == input_conv_keys(model)
    assert report.input_channels == (1, 2)
    assert report.skipped == {}
    assert sorted(report.loaded + report.adapted) == sorted(model.state_dict())
    # The rule for 1 → 2: each channel gets half the source filter.
    w = source.state_dict()["encoders.0.conv1.weight"]
    assert torch.allclose(model.state_dict()["encoders.0.conv1.weight"], torch.cat([w, w], 1) / 2)

    x = image(spatial_dims)
    with torch.no_grad():
        expected = source(x)["mask"]
        got = model(torch.cat([x, x], 1))["mask"]
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        # Without the scaling the activations would double at the input: the check above would fail.
        naive = unet(spatial_dims, 2, residual=residual).eval()
        state = dict(source.state_dict())
        for key in first:
            state[key] = torch.cat([state[key]] * 2, 1)
        naive.load_state_dict(state)
        assert not torch.allclose(naive(torch.cat([x, x], 1))["mask"], expected, atol=1e-3)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_three_to_one_channel_sums_the_filters(spatial_dims):
    source = trained_like(unet(spatial_dims, 3), spatial_dims)
    model = unet(spatial_dims, 1, seed=5).eval()
    report = transfer_weights(model, source.state_dict())
    assert report.adapted == ["encoders.0.conv1.weight"] and report.input_channels == (3, 1)
    w = source.state_dict()["encoders.0.conv1.weight"]
    assert torch.allclose(model.state_dict()["encoders.0.conv1.weight"], w.sum(1, keepdim=True), atol=1e-6)
    x = image(spatial_dims)
    with torch.no_grad():
        torch.testing.assert_close(
            model(x)["mask"], source(torch.cat([x, x, x], 1))["mask"], atol=1e-5, rtol=1e-5
        )


@pytest.mark.parametrize("src,dst", [(1, 3), (2, 3), (3, 2), (4, 1)])
def test_equal_channel_inputs_give_the_source_output_for_any_channel_change(src, dst):
    source = trained_like(unet(2, src), 2)
    model = unet(2, dst, seed=5).eval()
    transfer_weights(model, source.state_dict())
    x = image(2)
    with torch.no_grad():
        torch.testing.assert_close(
            model(x.repeat(1, dst, 1, 1))["mask"], source(x.repeat(1, src, 1, 1))["mask"],
            atol=1e-5, rtol=1e-5,
        )


def test_adapt_rule_keeps_source_channels_in_place_when_adding_channels():
    w = torch.randn(5, 2, 3, 3)
    out = adapt_input_channels(w, 3)
    assert out.shape == (5, 3, 3, 3)
    # Channels 0 and 1 stay the source's (scaled by 2/3); the new one is the mean (scaled by 2/3).
    torch.testing.assert_close(out[:, :2], w * 2 / 3)
    torch.testing.assert_close(out[:, 2], w.mean(1) * 2 / 3)
    torch.testing.assert_close(out.sum(1), w.sum(1))
    torch.testing.assert_close(adapt_input_channels(w, 2), w)  # same count: unchanged
    torch.testing.assert_close(adapt_input_channels(torch.randn(4, 3, 3).double(), 1).sum(1).shape,
                               torch.Size([4, 3]))
    with pytest.raises(BiosegError, match="channels"):
        adapt_input_channels(w, 0)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_heads_of_another_size_are_skipped_with_reasons(spatial_dims):
    source = trained_like(unet(spatial_dims, 1, heads={"mask": 2, "extra": 1}), spatial_dims)
    model = unet(spatial_dims, 2, heads={"mask": 3, "new": 1}, seed=5).eval()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    report = transfer_weights(model, source.state_dict())

    k = (1,) * spatial_dims
    assert report.skipped == {
        "head_convs.mask.weight": f"shape {(2, 4, *k)} vs {(3, 4, *k)}",
        "head_convs.mask.bias": "shape (2,) vs (3,)",
        "head_convs.new.weight": NOT_IN_SOURCE,
        "head_convs.new.bias": NOT_IN_SOURCE,
        "head_convs.extra.weight": NOT_IN_MODEL,
        "head_convs.extra.bias": NOT_IN_MODEL,
    }
    state = model.state_dict()
    for key in ("head_convs.mask.weight", "head_convs.mask.bias", "head_convs.new.weight"):
        assert torch.equal(state[key], init[key])  # kept the model's own initialisation
    body = [key for key in state if not key.startswith("head_convs.") and key not in report.adapted]
    assert sorted(report.loaded) == sorted(body)
    for key in body:
        assert torch.equal(state[key], source.state_dict()[key])
    assert report.summary() == (
        f"loaded {len(body)} tensors, adapted 1 (first conv: 1 → 2 input channels), skipped 6 (heads)"
    )
    with pytest.raises(BiosegError, match=r"head_convs\.mask\.weight: shape"):
        transfer_weights(unet(spatial_dims, 2, heads={"mask": 3}), source.state_dict(), strict_shapes=True)


def test_report_summary_line_and_dict():
    source = unet(2, 1, heads={"mask": 1})
    model = unet(2, 2, heads={"mask": 2})
    report = transfer_weights(model, source.state_dict())
    n = len(model.state_dict()) - 3  # all but the adapted first conv and the two head tensors
    assert report.summary() == (
        f"loaded {n} tensors, adapted 1 (first conv: 1 → 2 input channels), skipped 2 (heads)"
    )
    d = json.loads(json.dumps(report.to_dict()))
    assert d["summary"] == report.summary()
    assert d["input_channels"] == [1, 2] and d["adapted"] == ["encoders.0.conv1.weight"]
    assert set(d["skipped"]) == {"head_convs.mask.weight", "head_convs.mask.bias"}
    assert len(d["loaded"]) == n


def test_unrelated_source_is_an_error():
    with pytest.raises(BiosegError, match="shares no layer weights"):
        transfer_weights(unet(3, 1), unet(2, 1).state_dict())  # 2D weights for a 3D model
    with pytest.raises(BiosegError, match="read_state"):
        transfer_weights(unet(2, 1), {"encoders.0.conv1.weight": "not a tensor"})


def test_weights_follow_the_model_dtype():
    source = unet(2, 1)
    model = unet(2, 1, seed=5).double()
    state = {k: v.half() if v.is_floating_point() else v for k, v in source.state_dict().items()}
    transfer_weights(model, state)
    w = model.state_dict()["encoders.0.conv1.weight"]
    assert w.dtype == torch.float64
    assert torch.equal(w, source.state_dict()["encoders.0.conv1.weight"].half().double())


# ----------------------------------------------------------------------------------------------------------
# Reading weights


def assert_same_state(a, b):
    assert list(a) == list(b) or sorted(a) == sorted(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def write_run(root, model):
    """The run-folder layout of bioseg.engine.run_folder: fold_0/model/{weights.safetensors, model.json}."""
    model_dir = root / "fold_0" / "model"
    model_dir.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(model_dir / "weights.safetensors"))
    (model_dir / "model.json").write_text(json.dumps({"format": "bioseg-model"}))
    return root / "fold_0"


def test_read_state_from_run_folder_model_folder_and_safetensors_file(tmp_path):
    source = trained_like(unet(2, 1), 2)
    fold = write_run(tmp_path / "exp", source)
    expected = source.state_dict()
    for path in (fold, fold / "model", fold / "model" / "weights.safetensors", tmp_path / "exp"):
        assert_same_state(read_state(path), expected)
    # Read from disk, then into a 2-channel model: the usual fine-tuning path.
    model = unet(2, 2, seed=5).eval()
    report = transfer_weights(model, read_state(str(fold)))
    assert report.adapted == ["encoders.0.conv1.weight"] and not report.skipped
    x = image(2)
    with torch.no_grad():
        got = model(torch.cat([x, x], 1))["mask"]
        torch.testing.assert_close(got, source(x)["mask"], atol=1e-5, rtol=1e-5)


def test_read_state_from_lightning_checkpoint_strips_net_prefix(tmp_path):
    source = trained_like(unet(3, 1), 3)
    state = {"net." + k: v for k, v in source.state_dict().items()}
    state["loss.terms.0.weight"] = torch.ones(2)  # the training module's other tensors are left out
    ckpt = {
        "state_dict": state, "epoch": 3, "global_step": 12,
        "hyper_parameters": {"config": {"name": "t", "model": {"widths": [4, 8]}}},
    }
    torch.save(ckpt, tmp_path / "last.ckpt")
    got = read_state(tmp_path / "last.ckpt")
    assert_same_state(got, source.state_dict())
    model = unet(3, 1, seed=5).eval()
    transfer_weights(model, got, strict_shapes=True)
    x = image(3)
    with torch.no_grad():
        assert torch.equal(model(x)["mask"], source(x)["mask"])
    # A plain state dict saved with torch.save, and one saved from a DataParallel wrapper.
    torch.save(source.state_dict(), tmp_path / "plain.pt")
    assert_same_state(read_state(tmp_path / "plain.pt"), source.state_dict())
    torch.save({"module." + k: v for k, v in source.state_dict().items()}, tmp_path / "dp.pth")
    assert_same_state(read_state(tmp_path / "dp.pth"), source.state_dict())


class _Opaque:
    pass


def test_unreadable_paths_raise_errors_naming_them(tmp_path):
    missing = tmp_path / "nope" / "fold_0"
    with pytest.raises(BiosegError, match="nope.*does not exist"):
        read_state(missing)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(BiosegError, match="bad.safetensors is not a readable safetensors"):
        read_state(bad)
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint at all")
    with pytest.raises(BiosegError, match="broken.ckpt is not a readable PyTorch checkpoint"):
        read_state(broken)
    empty_run = tmp_path / "run" / "fold_0"
    (empty_run / "checkpoints").mkdir(parents=True)
    with pytest.raises(BiosegError, match="holds no weights"):
        read_state(empty_run)
    (empty_run / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(BiosegError, match="last.ckpt to start from the last checkpoint"):
        read_state(empty_run)
    torch.save({"epoch": 1}, tmp_path / "no_state.ckpt")
    with pytest.raises(BiosegError, match="no_state.ckpt holds no tensors"):
        read_state(tmp_path / "no_state.ckpt")
    torch.save({"state_dict": {"net.w": torch.ones(1)}, "obj": _Opaque()}, tmp_path / "pickled.ckpt")
    with pytest.raises(BiosegError, match=r"pickled.ckpt holds Python objects besides tensors \(.*_Opaque\)"):
        read_state(tmp_path / "pickled.ckpt")
    two_folds = tmp_path / "exp2"
    for fold in ("fold_0", "fold_1"):
        (two_folds / fold / "model").mkdir(parents=True)
        save_file({"w": torch.ones(1)}, str(two_folds / fold / "model" / "weights.safetensors"))
    with pytest.raises(BiosegError, match="2 folds"):
        read_state(two_folds)
