"""Batched augmentations: invariants, image/target consistency, and scipy as the reference for resampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from bioseg.config import AugmentStep, default_augment
from bioseg.data import augment_intensity as inten
from bioseg.data import augment_spatial as spat
from bioseg.data.augment import AUGMENTATIONS, Augmentation, build_augmentation, make_transform
from bioseg.errors import BiosegError

ODD = {2: (33, 34), 3: (17, 18, 19)}
SQUARE = {2: (32, 32), 3: (9, 16, 16)}
SPATIAL = ["flip", "rot90", "rotate", "scale", "elastic"]
INTENSITY = ["gaussian_blur", "gaussian_noise", "poisson_noise", "brightness_contrast", "gamma"]
dims = pytest.mark.parametrize("d", [2, 3])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def blobs(shape: tuple[int, ...], n: int = 4, seed: int = 0) -> torch.Tensor:
    """Smooth random foreground masks ``(n, 1, *shape)`` int64 (about half foreground, big blobs)."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(size=(n, *shape)), sigma=(0,) + (3,) * len(shape))
    return torch.from_numpy(noise > 0).long().unsqueeze(1)


def all_steps(p: float = 1.0, names: list[str] | None = None) -> list[dict]:
    return [{"name": name, "p": p} for name in (names or SPATIAL + INTENSITY)]


def test_registry_holds_every_name() -> None:
    assert set(AUGMENTATIONS.names()) == set(SPATIAL + INTENSITY)


# --- exact spatial transforms -------------------------------------------------------------------


@dims
def test_flip_twice_with_the_same_draw_is_identity(d: int) -> None:
    x = torch.rand(8, 2, *ODD[d])
    aug = build_augmentation(all_steps(names=["flip"]), d)
    once, _ = aug(x, generator=gen(3))
    twice, _ = aug(once, generator=gen(3))
    assert not torch.equal(once, x)
    assert torch.equal(twice, x)
    # every sample is the input flipped along some subset of axes (reference: torch.flip)
    subsets = [[a + 2 for a in range(d) if (m >> a) & 1] for m in range(2**d)]
    for i in range(8):
        assert any(torch.equal(once[i : i + 1], x[i : i + 1].flip(s) if s else x[i : i + 1]) for s in subsets)


def test_flip_axes_restricts_the_flipped_axes() -> None:
    x = torch.rand(8, 1, *ODD[3])
    aug = build_augmentation([{"name": "flip", "p": 1.0, "axes": [0]}], 3)
    out, _ = aug(x, generator=gen(1))
    flipped = [torch.equal(out[i], x[i].flip(1)) for i in range(8)]
    assert all(f or torch.equal(out[i], x[i]) for i, f in enumerate(flipped))
    assert any(flipped) and not all(flipped)


@dims
def test_rot90_four_times_with_the_same_draw_is_identity(d: int) -> None:
    x = torch.rand(8, 1, *SQUARE[d])
    mask = blobs(SQUARE[d], n=8)
    aug = build_augmentation(all_steps(names=["rot90"]), d)
    outs = [(x, {"mask": mask})]
    for _ in range(4):
        outs.append(aug(*outs[-1], generator=gen(5)))
    assert torch.equal(outs[4][0], x) and torch.equal(outs[4][1]["mask"], mask)
    once, once_mask = outs[1][0], outs[1][1]["mask"]
    # each sample is a quarter-turn of the input in the last two axes (reference: torch.rot90)
    for i in range(8):
        k = [j for j in range(4) if torch.equal(once[i], torch.rot90(x[i], j, (-2, -1)))]
        assert len(k) == 1 and torch.equal(once_mask[i], torch.rot90(mask[i], k[0], (-2, -1)))
    assert not torch.equal(once, x)


@dims
def test_rot90_on_a_non_square_plane_uses_half_turns_only(d: int) -> None:
    x = torch.rand(8, 1, *ODD[d])
    out, _ = build_augmentation(all_steps(names=["rot90"]), d)(x, generator=gen(2))
    half = [torch.equal(out[i], torch.rot90(x[i], 2, (-2, -1))) for i in range(8)]
    assert out.shape == x.shape
    assert all(h or torch.equal(out[i], x[i]) for i, h in enumerate(half)) and any(half)


def test_rot90_function_refuses_odd_turns_on_a_non_square_plane() -> None:
    with pytest.raises(BiosegError, match="square"):
        spat.rot90(torch.rand(2, 1, 5, 6), torch.tensor([1, 0]))


# --- resampling: reference and consistency ------------------------------------------------------


@dims
def test_quarter_turn_rotation_equals_rot90(d: int) -> None:
    labels = torch.randint(0, 50, (1, 1, *SQUARE[d]))
    grid = spat.sampling_grid(spat.rotation_matrix(torch.tensor([math.pi / 2]), d), None, SQUARE[d])
    assert torch.equal(spat.resample(labels, grid), torch.rot90(labels, 1, (-2, -1)))


@dims
def test_sampling_grid_matches_scipy_map_coordinates(d: int) -> None:
    shape = ODD[d]
    x = torch.rand(1, 1, *shape, dtype=torch.float64)
    m = spat.rotation_matrix(torch.tensor([0.7]), d) @ spat.scale_matrix(torch.tensor([1.1]), d)
    disp = spat.elastic_displacement(shape, torch.tensor([3.0]), 4.0, gen(1))
    out = spat.resample(x.float(), spat.sampling_grid(m, disp, shape), "zeros")[0, 0].numpy()
    # reference: input sampled at M (p - c) + c + displacement(p), linear, zeros outside the pixel grid
    centre = (np.array(shape) - 1) / 2
    p = np.indices(shape).reshape(d, -1) - centre[:, None]
    coords = m[0].double().numpy() @ p + centre[:, None] + disp[0].double().numpy().reshape(-1, d).T
    ref = ndimage.map_coordinates(x[0, 0].numpy(), coords, order=1, mode="grid-constant").reshape(shape)
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_rotate_is_in_plane_for_3d() -> None:
    z = torch.linspace(0, 1, 9).view(1, 1, 9, 1, 1).expand(2, 1, 9, 12, 13).contiguous()
    aug = build_augmentation([{"name": "rotate", "p": 1.0}], 3, padding_mode="border")
    out, _ = aug(z, generator=gen(0))
    torch.testing.assert_close(out, z, atol=1e-5, rtol=0)


@dims
@pytest.mark.parametrize("padding_mode", ["zeros", "reflection"])
def test_spatial_transforms_move_image_and_targets_together(d: int, padding_mode: str) -> None:
    mask = blobs(ODD[d], n=6)
    image = mask.float()
    targets = {"mask": mask, "soft": mask.float(), "copy": image.clone()}
    aug = build_augmentation(all_steps(names=SPATIAL), d, padding_mode=padding_mode, track_valid=True)
    out, t = aug(image, targets, generator=gen(7))
    assert not torch.equal(t["mask"], mask)
    valid = t["valid"] > 0.5
    agree = ((out > 0.5) == t["mask"].bool())[valid].float().mean()
    assert agree > 0.98
    assert ((t["soft"] > 0.5) == t["mask"].bool()).float().mean() > 0.98
    if padding_mode == "zeros":  # same grid, same interpolation, same padding: a float copy matches exactly
        assert torch.equal(t["copy"], out)
        assert ((out > 0.5) == t["mask"].bool()).float().mean() > 0.98
    else:  # reflection differs only where the pixel came from outside the image
        torch.testing.assert_close(t["copy"][valid], out[valid], atol=1e-3, rtol=0)
        assert (~valid).any()


@dims
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64, torch.bool])
def test_integer_targets_keep_dtype_and_values(d: int, dtype: torch.dtype) -> None:
    base = blobs(ODD[d], n=4) * torch.randint(1, 4, (4, 1, *ODD[d]), generator=gen(0))
    values = {0: 0, 1: 3, 2: 7, 3: 200} if dtype != torch.bool else {0: 0, 1: 1, 2: 1, 3: 1}
    labels = torch.tensor(list(values.values()))[base].to(dtype)
    _, t = build_augmentation(all_steps(names=SPATIAL), d)(torch.rand(4, 1, *ODD[d]), {"y": labels}, gen(4))
    assert t["y"].dtype == dtype and t["y"].shape == labels.shape
    assert set(t["y"].unique().tolist()) <= set(labels.unique().tolist())
    assert not torch.equal(t["y"], labels)


def test_large_instance_labels_survive_exactly() -> None:
    labels = (blobs(ODD[2], n=2) * (2**30 + 1)).long()  # not representable in float32
    _, t = build_augmentation(all_steps(names=SPATIAL), 2)(torch.rand(2, 1, *ODD[2]), {"y": labels}, gen(0))
    assert set(t["y"].unique().tolist()) == {0, 2**30 + 1}


@dims
def test_float_weight_maps_stay_in_range(d: int) -> None:
    weights = 0.5 + 2.5 * torch.rand(4, 1, *ODD[d])
    aug = build_augmentation(all_steps(names=SPATIAL), d, track_valid=True)
    _, t = aug(torch.rand(4, 1, *ODD[d]), {"w": weights}, gen(1))
    inside = t["w"][t["valid"] == 1]
    assert inside.min() >= 0.5 - 1e-6 and inside.max() <= 3.0 + 1e-6
    # outside the image, targets are padded like the image (mirrored): still within the original range
    assert t["w"].min() >= 0.5 - 1e-6 and t["w"].max() <= 3.0 + 1e-6
    _, exact = build_augmentation(all_steps(names=["flip", "rot90"]), d)(
        torch.rand(4, 1, *ODD[d]), {"w": weights}
    )
    assert exact["w"].min() == weights.min() and exact["w"].max() == weights.max()


def test_valid_marks_padding_and_carries_an_incoming_mask() -> None:
    aug = build_augmentation([{"name": "rotate", "p": 1.0, "degrees": [45, 45]}], 2, track_valid=True)
    _, t = aug(torch.rand(1, 1, 33, 33), {})
    assert t["valid"][0, 0, 0, 0] == 0 and t["valid"][0, 0, 16, 16] == 1
    incoming = torch.ones(1, 1, 33, 33)
    incoming[..., 14:19, 14:19] = 0  # the caller already knows these pixels are invalid
    _, t = aug(torch.rand(1, 1, 33, 33), {"valid": incoming})
    assert t["valid"][0, 0, 16, 16] == 0 and t["valid"][0, 0, 0, 0] == 0 and t["valid"][0, 0, 16, 8] == 1
    _, none = build_augmentation(all_steps(names=["flip"]), 2, track_valid=True)(torch.rand(2, 1, 9, 9))
    assert torch.equal(none["valid"], torch.ones(2, 1, 9, 9))


# --- intensity transforms -----------------------------------------------------------------------


@dims
def test_gaussian_blur_matches_scipy(d: int) -> None:
    x = torch.rand(2, 1, *ODD[d])
    out = inten.gaussian_blur(x, torch.tensor([0.8, 1.4]))
    for i, sigma in enumerate([0.8, 1.4]):
        ref = ndimage.gaussian_filter(x[i, 0].numpy(), sigma, mode="mirror", truncate=3.0 * 1.4 / sigma)
        np.testing.assert_allclose(out[i, 0].numpy(), ref, atol=1e-5)


def test_brightness_contrast_and_gamma_follow_their_formulas() -> None:
    x = torch.rand(2, 3, 17, 18)
    out = inten.brightness_contrast(x, torch.tensor([0.1, -0.2]), torch.tensor([1.5, 0.5]))
    mean = x.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(
        out.mean(dim=(2, 3), keepdim=True), mean + torch.tensor([0.1, -0.2]).view(2, 1, 1, 1)
    )
    torch.testing.assert_close(out.std(dim=(2, 3)), x.std(dim=(2, 3)) * torch.tensor([[1.5], [0.5]]))
    g = inten.gamma(x, torch.tensor([2.0, 0.5]))
    lo, hi = x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)
    ref = ((x - lo) / (hi - lo)) ** torch.tensor([2.0, 0.5]).view(2, 1, 1, 1) * (hi - lo) + lo
    torch.testing.assert_close(g, ref)


def test_noise_statistics() -> None:
    x = torch.full((2, 1, 128, 128), 1.0)
    noisy = inten.gaussian_noise(x, torch.tensor([0.05, 0.2]), gen(0))
    torch.testing.assert_close((noisy - x).std(dim=(1, 2, 3)), torch.tensor([0.05, 0.2]), rtol=0.05, atol=0)
    x[:, :, 0, 0] = 0  # the minimum stays the zero point of the photon counts
    shot = inten.poisson_noise(x, torch.tensor([100.0, 25.0]), gen(0))
    torch.testing.assert_close(shot[:, :, 1:].mean(dim=(1, 2, 3)), torch.ones(2), rtol=0.02, atol=0)
    torch.testing.assert_close(
        shot[:, :, 1:].var(dim=(1, 2, 3)), torch.tensor([0.01, 0.04]), rtol=0.1, atol=0
    )


@dims
@pytest.mark.parametrize("name", INTENSITY)
def test_intensity_transforms_change_only_the_image(d: int, name: str) -> None:
    x = torch.rand(3, 2, *ODD[d])
    targets = {"mask": blobs(ODD[d], n=3), "w": torch.rand(3, 1, *ODD[d])}
    out, t = build_augmentation([{"name": name, "p": 1.0}], d)(x, targets, gen(0))
    assert not torch.equal(out, x) and out.shape == x.shape and out.dtype == x.dtype
    assert t.keys() == targets.keys() and all(torch.equal(t[k], targets[k]) for k in targets)


def test_elastic_displacement_peaks_at_alpha_and_is_smooth() -> None:
    disp = spat.elastic_displacement((64, 64), torch.tensor([10.0, 0.0, 4.0]), 8.0, gen(0))
    assert disp.shape == (3, 64, 64, 2)
    peak = disp.abs().amax(dim=(1, 2, 3))
    assert (peak <= torch.tensor([10.0, 0.0, 4.0]) + 1e-5).all()
    assert (peak >= torch.tensor([9.0, 0.0, 3.6])).all()
    assert disp.diff(dim=1).abs().max() < 10.0 / 4  # neighbours move almost together


# --- pipeline behaviour -------------------------------------------------------------------------


@dims
def test_seeded_generator_gives_identical_batches(d: int) -> None:
    x, mask = torch.rand(4, 1, *ODD[d]), blobs(ODD[d])
    aug = build_augmentation(all_steps(p=0.7), d, track_valid=True)
    a, ta = aug(x, {"mask": mask}, gen(11))
    b, tb = aug(x, {"mask": mask}, gen(11))
    c, _ = aug(x, {"mask": mask}, gen(12))
    assert torch.equal(a, b) and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert not torch.equal(a, c)


@dims
def test_p_zero_is_identity(d: int) -> None:
    x, targets = torch.rand(4, 2, *ODD[d]), {"mask": blobs(ODD[d]), "w": torch.rand(4, 1, *ODD[d])}
    out, t = build_augmentation(all_steps(p=0.0), d)(x, targets, gen(0))
    assert torch.equal(out, x) and all(torch.equal(t[k], targets[k]) for k in targets)


@dims
def test_output_shapes_and_dtypes_equal_inputs_for_odd_sizes(d: int) -> None:
    x = torch.rand(3, 2, *ODD[d])
    targets = {
        "mask": blobs(ODD[d], n=3).to(torch.uint8),
        "w": torch.rand(3, 1, *ODD[d], dtype=torch.float64),
    }
    before = {k: v.clone() for k, v in targets.items()}
    x0 = x.clone()
    out, t = build_augmentation(all_steps(), d, track_valid=True)(x, targets, gen(0))
    assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()
    assert all(t[k].shape == targets[k].shape and t[k].dtype == targets[k].dtype for k in targets)
    assert t["valid"].shape == (3, 1, *ODD[d])
    assert torch.equal(x, x0) and all(torch.equal(targets[k], before[k]) for k in targets)  # inputs untouched


def test_a_default_batch_of_256_squared_runs() -> None:
    x = torch.rand(8, 1, 256, 256)
    mask = blobs((256, 256), n=8)
    out, t = build_augmentation(all_steps(), 2)(x, {"mask": mask}, gen(0))
    assert out.shape == x.shape and torch.isfinite(out).all() and t["mask"].shape == mask.shape


def test_config_steps_build() -> None:
    aug = build_augmentation(default_augment() + [AugmentStep(name="rotate", p=1.0, degrees=30)], 2)
    names = [t.name for t in aug.transforms]
    assert names == ["flip", "rot90", "brightness_contrast", "gaussian_noise", "rotate"]
    assert aug.transforms[-1].degrees == (-30.0, 30.0)


# --- errors ---------------------------------------------------------------------------------------


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(BiosegError, match="Did you mean 'flip'"):
        build_augmentation([{"name": "flpi"}], 2)


def test_unknown_option_lists_the_valid_ones() -> None:
    with pytest.raises(
        BiosegError, match="no option 'degree'.*valid: p, degrees, axes.*Did you mean 'degrees'"
    ):
        build_augmentation([{"name": "rotate", "degree": 10}], 2)


@pytest.mark.parametrize(
    ("step", "match"),
    [
        ({"name": "flip", "p": 1.5}, "probability"),
        ({"name": "scale", "range": [0.0, 2.0]}, "> 0"),
        ({"name": "gamma", "range": [1.5, 0.7]}, "low > high"),
        ({"name": "flip", "axes": [2]}, "does not exist"),
        ({"name": "rot90", "axes": [0]}, "expected 2"),
        ({"name": "gaussian_noise", "std": "big"}, "number or a pair"),
        ({"name": "elastic", "sigma": [1, 2]}, "one number"),
    ],
)
def test_bad_options_raise_bioseg_errors(step: dict, match: str) -> None:
    with pytest.raises(BiosegError, match=match):
        build_augmentation([step], 2)


def test_bad_inputs_raise_bioseg_errors() -> None:
    aug = build_augmentation([{"name": "flip"}], 2)
    with pytest.raises(BiosegError, match="float image"):
        aug(torch.zeros(2, 1, 8, 8, dtype=torch.long))
    with pytest.raises(BiosegError, match="target 'mask'"):
        aug(torch.zeros(2, 1, 8, 8), {"mask": torch.zeros(2, 1, 8, 9)})
    with pytest.raises(BiosegError, match="padding_mode"):
        build_augmentation([], 2, padding_mode="mirror")
    with pytest.raises(BiosegError, match="built for 3D"):
        Augmentation([make_transform("flip", 3)], 2)


@pytest.mark.parametrize("d", [2, 3])
def test_image_and_mask_are_padded_alike(d):
    """A mirrored object in the padding keeps its label: thresholding the image gives the mask everywhere."""
    mask = torch.zeros(2, 1, *ODD[d], dtype=torch.int64)
    mask[(slice(None), slice(None)) + (slice(2, 9),) * d] = 1  # an object touching the border region
    aug = build_augmentation([{"name": "scale", "p": 1.0, "range": [0.6, 0.7]}], d)
    image, t = aug(mask.float(), {"m": mask}, gen(3))
    agree = ((image > 0.5).long() == t["m"]).float().mean()
    assert agree > 0.98
