import math

import pytest
import torch
from monai.data.utils import dense_patch_slices
from monai.inferers import sliding_window_inference
from monai.inferers.utils import _get_scan_interval, compute_importance_map

from bioseg.errors import BiosegError
from bioseg.inference.tiling import gaussian_window, sliding_window, tile_starts


def identity_predict(batch: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"same": batch, "doubled": 2 * batch[:, :1]}


def small_net(spatial_dims: int, in_channels: int = 2, out_channels: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d if spatial_dims == 2 else torch.nn.Conv3d
    return torch.nn.Sequential(
        conv(in_channels, 4, 3, padding=1), torch.nn.ReLU(), conv(4, out_channels, 3, padding=1)
    ).eval()


def monai_starts(size: int, patch: int, overlap: float) -> list[int]:
    interval = _get_scan_interval((size,), (patch,), 1, (overlap,))
    return [s[0].start for s in dense_patch_slices((size,), (patch,), interval)]


@pytest.mark.parametrize("size", [1, 5, 16, 17, 31, 32, 33, 64, 80, 100, 257])
@pytest.mark.parametrize("patch", [1, 7, 16, 32])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.9])
def test_tile_starts_cover_and_end_flush(size, patch, overlap):
    if patch > size:
        with pytest.raises(BiosegError):
            tile_starts(size, patch, overlap)
        return
    starts = tile_starts(size, patch, overlap)
    step = max(1, int(patch * (1 - overlap)))
    assert starts[0] == 0 and starts[-1] + patch == size
    # consecutive tiles overlap at least as much as asked
    assert all(0 < b - a <= step for a, b in zip(starts, starts[1:], strict=False))
    covered = torch.zeros(size, dtype=torch.bool)
    for s in starts:
        covered[s : s + patch] = True
    assert covered.all()
    reference = monai_starts(size, patch, overlap)
    assert len(starts) == len(reference)
    if (size - patch) % step == 0:
        assert starts == reference


def test_tile_starts_spread_evenly_where_monai_pushes_the_last_back():
    # the documented difference: MONAI steps 0, 24 and pushes the last tile back to 32
    assert monai_starts(64, 32, 0.25) == [0, 24, 32]
    assert tile_starts(64, 32, 0.25) == [0, 16, 32]


@pytest.mark.parametrize("size", [32, 33, 100, 257, 2048])
@pytest.mark.parametrize("patch", [16, 32, 256])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
@pytest.mark.parametrize("align", [2, 8, 16])
def test_aligned_tile_starts_sit_on_the_pooling_grid(size, patch, overlap, align):
    if patch > size:
        return
    starts = tile_starts(size, patch, overlap, align)
    step = max(1, int(patch * (1 - overlap)))
    assert starts[0] == 0 and starts[-1] + patch == size
    assert all(0 < b - a <= step for a, b in zip(starts, starts[1:], strict=False))
    if step >= align:
        assert all(s % align == 0 for s in starts[:-1])
    # the rule reduces to the unaligned one when the span and the step are already on the grid
    if (size - patch) % step == 0 and step % align == 0:
        assert starts == tile_starts(size, patch, overlap)


def cell_net() -> torch.nn.Module:
    """Each output pixel depends only on its own 2 × 2 pooling cell: equivariant to shifts by 2 only."""
    return torch.nn.Sequential(torch.nn.AvgPool2d(2), torch.nn.Upsample(scale_factor=2, mode="nearest"))


def test_tiles_on_the_pooling_grid_predict_as_the_whole_image():
    image = torch.rand(1, 60, 60)
    net = cell_net()
    whole = net(image[None])[0]
    predict = lambda t: {"out": net(t)}  # noqa: E731
    for patch, overlap in (((16, 16), 0.3), ((22, 26), 0.25), ((32, 32), 0.5)):
        aligned = sliding_window(predict, image, patch, overlap=overlap, size_divisor=2)["out"]
        torch.testing.assert_close(aligned, whole)
    # without the alignment a tile starts inside a cell and its pixels pool with other neighbours
    unaligned = sliding_window(predict, image, (22, 26), overlap=0.25, size_divisor=1)["out"]
    assert (unaligned - whole).abs().max() > 0.05


@pytest.mark.parametrize("patch", [(16, 17), (8, 9, 10), (1, 5)])
def test_gaussian_window_shape_symmetry_and_monai(patch):
    w = gaussian_window(patch)
    assert w.shape == patch and w.dtype == torch.float32
    for axis in range(len(patch)):
        assert torch.equal(w, w.flip(axis))
    assert float(w.min()) >= 1e-3
    centre = tuple(p // 2 for p in patch)
    assert float(w[centre]) == float(w.max())
    assert torch.equal(w, compute_importance_map(patch, mode="gaussian", sigma_scale=0.125))


def test_gaussian_window_minimum_is_clipped():
    w = gaussian_window((64,), sigma_scale=0.05)
    assert float(w.min()) == pytest.approx(1e-3, rel=1e-6) and float(w.max()) > 0.98
    assert int((w == w.min()).sum()) > 10  # the tails are clipped, not tiny


def test_gaussian_window_is_cached():
    a = gaussian_window((12, 13))
    assert gaussian_window([12, 13], 0.125, "cpu", torch.float32) is a
    assert gaussian_window((12, 13), sigma_scale=0.25) is not a
    assert gaussian_window((12, 13), dtype=torch.float64) is not a
    assert gaussian_window((12, 13), dtype=torch.float64).dtype == torch.float64


CASES_2D = [
    ((33, 34), (16, 16), 0.25, 1),
    ((17, 40), (16, 16), 0.5, 8),
    ((5, 7), (16, 16), 0.25, 1),  # smaller than the patch on both axes
    ((9, 50), (20, 20), 0.3, 16),  # patch not a multiple of the divisor, one axis padded
    ((1, 23), (8, 8), 0.25, 1),  # a 1-pixel axis cannot be reflected
    ((37, 3), (12, 32), 0.75, (4, 16)),
]
CASES_3D = [
    ((17, 18, 19), (8, 8, 8), 0.25, 1),
    ((5, 18, 11), (8, 12, 12), 0.5, 4),
]


@pytest.mark.parametrize("spatial, patch, overlap, divisor", CASES_2D + CASES_3D)
@pytest.mark.parametrize("blending", ["gaussian", "constant"])
@pytest.mark.parametrize("pad_mode", ["reflect", "replicate", "constant"])
def test_identity_predict_returns_the_input(spatial, patch, overlap, divisor, blending, pad_mode):
    torch.manual_seed(1)
    image = torch.randn(2, *spatial)
    seen = []

    def predict(batch):
        seen.append(tuple(batch.shape))
        return identity_predict(batch)

    out = sliding_window(predict, image, patch, overlap=overlap, blending=blending, batch_size=3,
                         size_divisor=divisor, pad_mode=pad_mode)
    assert list(out) == ["same", "doubled"]
    assert out["same"].dtype == torch.float32 and out["same"].shape == image.shape
    torch.testing.assert_close(out["same"], image, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["doubled"], 2 * image[:1], rtol=1e-5, atol=1e-5)
    divisors = (divisor,) * len(spatial) if isinstance(divisor, int) else divisor
    for shape in seen:
        assert shape[0] <= 3 and shape[1] == 2
        assert all(s % d == 0 and s <= max(p, d) for s, p, d in zip(shape[2:], patch, divisors, strict=True))


def test_padding_modes_reach_the_network():
    image = torch.arange(1.0, 6.0).reshape(1, 1, 5)  # (C, 1, 5)
    seen = {}
    for mode in ["reflect", "replicate", "constant"]:
        def predict(batch, mode=mode):
            seen[mode] = batch[0, 0].clone()
            return {"x": batch}

        sliding_window(predict, image, (3, 9), pad_mode=mode)
    # the 1-pixel axis is replicated, the 5-pixel axis padded by 2 on each side
    assert seen["reflect"][1].tolist() == [3, 2, 1, 2, 3, 4, 5, 4, 3]
    assert seen["replicate"][1].tolist() == [1, 1, 1, 2, 3, 4, 5, 5, 5]
    assert torch.equal(seen["reflect"][0], seen["reflect"][1])
    assert seen["constant"][1].tolist() == [0, 0, 1, 2, 3, 4, 5, 0, 0]
    assert seen["constant"][0].abs().sum() == 0


def test_long_reflection_keeps_mirroring():
    image = torch.tensor([[[1.0, 2.0, 3.0]]])
    seen = []
    sliding_window(lambda b: seen.append(b[0, 0, 0].clone()) or {"x": b}, image, (1, 13))
    # 5 pixels before and after, mirrored back and forth: period 4
    assert seen[0].tolist() == [2, 1, 2, 3, 2, 1, 2, 3, 2, 1, 2, 3, 2]


@pytest.mark.parametrize(
    "spatial, patch, overlap",
    [
        ((80, 56), (32, 32), 0.25),  # 80 = 32 + 2*24, 56 = 32 + 24: a multiple of the tile grid
        ((48, 48), (16, 24), 0.5),
        ((16, 24, 32), (16, 16, 16), 0.5),
        ((20, 50), (32, 32), 0.25),  # padded axis (pad_mode "constant" as MONAI) and 50 - 32 < step
    ],
)
@pytest.mark.parametrize("blending", ["gaussian", "constant"])
def test_matches_monai_where_tiles_coincide(spatial, patch, overlap, blending):
    net = small_net(len(spatial))
    image = torch.randn(2, *spatial, generator=torch.Generator().manual_seed(2))

    def predict(batch):
        return {"logits": net(batch)}

    ours = sliding_window(predict, image, patch, overlap=overlap, blending=blending, batch_size=3,
                          pad_mode="constant")
    with torch.no_grad():
        ref = sliding_window_inference(image[None], patch, 3, predict, overlap=overlap, mode=blending)
    assert ours["logits"].shape == (3, *spatial)
    torch.testing.assert_close(ours["logits"], ref["logits"][0], rtol=1e-5, atol=1e-6)


def test_differs_from_monai_only_by_tile_placement():
    # 64 with patch 32 and overlap 0.25: MONAI places tiles at 0, 24, 32; we place them at 0, 16, 32
    net = small_net(2)
    image = torch.randn(2, 64, 33, generator=torch.Generator().manual_seed(3))
    ours = sliding_window(lambda b: {"y": net(b)}, image, (32, 33), overlap=0.25)["y"]
    with torch.no_grad():
        ref = sliding_window_inference(image[None], (32, 33), 4, net, overlap=0.25, mode="gaussian")[0]
    # the outermost rows are covered by the same single tile in both, the middle rows are not
    torch.testing.assert_close(ours[:, :16], ref[:, :16], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ours[:, 24:40], ref[:, 24:40], atol=1e-4)
    # close anyway: both blend predictions of the same network
    assert float((ours - ref).abs().max()) < 0.5 * float(ref.abs().max())


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_batch_size_does_not_change_the_result(spatial_dims):
    net = small_net(spatial_dims)
    spatial = (33, 34) if spatial_dims == 2 else (11, 18, 13)
    patch = (16, 16) if spatial_dims == 2 else (8, 8, 8)
    image = torch.randn(2, *spatial, generator=torch.Generator().manual_seed(4))
    calls = []

    def predict(batch):
        calls.append(batch.shape[0])
        return {"a": net(batch), "b": net(batch)[:, :1].sigmoid()}

    results = [sliding_window(predict, image, patch, batch_size=b) for b in (1, 3, 1000)]
    n_tiles = math.prod(len(tile_starts(s, p, 0.25)) for s, p in zip(spatial, patch, strict=True))
    assert calls[:n_tiles] == [1] * n_tiles
    assert sum(calls) == 3 * n_tiles and max(calls) == n_tiles
    for r in results[1:]:
        assert list(r) == ["a", "b"]
        for key in r:
            torch.testing.assert_close(r[key], results[0][key], rtol=1e-6, atol=1e-6)


def test_progress_bar_goes_to_stderr(capsys):
    sliding_window(identity_predict, torch.zeros(1, 40, 40), (16, 16), progress=True)
    captured = capsys.readouterr()
    assert "tiles" in captured.err and captured.out == ""
    sliding_window(identity_predict, torch.zeros(1, 40, 40), (16, 16))
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_image_device():
    net = small_net(2).cuda()
    image = torch.randn(2, 45, 38, device="cuda")
    out = sliding_window(lambda b: {"y": net(b)}, image, (16, 16), overlap=0.5)
    assert out["y"].device == image.device
    ref = sliding_window(lambda b: {"y": net.cpu()(b)}, image.cpu(), (16, 16), overlap=0.5)
    torch.testing.assert_close(out["y"].cpu(), ref["y"], rtol=1e-4, atol=1e-4)


def test_input_errors():
    image = torch.zeros(1, 20, 20)
    with pytest.raises(BiosegError, match="patch_size"):
        sliding_window(identity_predict, image, (8, 8, 8))
    with pytest.raises(BiosegError, match="overlap"):
        sliding_window(identity_predict, image, (8, 8), overlap=1.0)
    with pytest.raises(BiosegError, match="blending"):
        sliding_window(identity_predict, image, (8, 8), blending="mean")
    with pytest.raises(BiosegError, match="pad_mode"):
        sliding_window(identity_predict, image, (8, 8), pad_mode="wrap")
    with pytest.raises(BiosegError, match=r"\(C, \*spatial\)"):
        sliding_window(identity_predict, torch.zeros(20, 20), (8, 8))
    with pytest.raises(BiosegError, match="dict"):
        sliding_window(lambda b: b, image, (8, 8))
    with pytest.raises(BiosegError, match="same spatial size"):
        sliding_window(lambda b: {"x": b[..., :4]}, image, (8, 8))
