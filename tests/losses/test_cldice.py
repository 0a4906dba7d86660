"""Soft clDice loss (against MONAI) and the clDice metric on hard masks (against hand-computed values)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.losses import SoftclDiceLoss, SoftDiceclDiceLoss
from monai.losses.cldice import soft_skel

from bioseg.errors import BiosegError
from bioseg.losses import LOSSES, HeadLoss, build_term, soft_dice_loss
from bioseg.losses.cldice import soft_cldice_loss, soft_skeleton
from bioseg.metrics.skeleton import cldice_score, topology_scores

SHAPES = {2: (33, 34), 3: (9, 10, 21)}


def _line(spatial_dims: int, thickness: int = 1) -> torch.Tensor:
    """``(1, 1, *spatial)`` float mask: a straight bar along the last axis, away from the borders."""
    mask = torch.zeros(1, 1, *SHAPES[spatial_dims])
    index = (0, 0) + tuple(slice(4, 4 + thickness) for _ in range(spatial_dims - 1)) + (slice(3, -3),)
    mask[index] = 1.0
    return mask


def _logits(mask: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    return (2 * mask - 1) * scale


# --- soft skeleton -----------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("iterations", [0, 1, 5])
def test_soft_skeleton_matches_monai(spatial_dims: int, iterations: int) -> None:
    torch.manual_seed(0)
    prob = torch.rand(2, 1, *SHAPES[spatial_dims], dtype=torch.float64)
    torch.testing.assert_close(soft_skeleton(prob, iterations), soft_skel(prob, iterations))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_soft_skeleton_of_thin_line_is_the_line_and_thick_bar_thins(spatial_dims: int) -> None:
    line = _line(spatial_dims)
    torch.testing.assert_close(soft_skeleton(line, 10), line)
    bar = _line(spatial_dims, thickness=5)
    skel = soft_skeleton(bar, 10)
    assert float(skel.sum()) < 0.5 * float(bar.sum())
    assert float((skel * (1 - bar)).sum()) == 0.0  # never outside the structure
    assert float(skel.min()) >= 0.0 and float(skel.max()) <= 1.0


def test_soft_skeleton_rejects_bad_input() -> None:
    with pytest.raises(BiosegError, match="expected"):
        soft_skeleton(torch.rand(3, 4))
    with pytest.raises(BiosegError, match="iterations"):
        soft_skeleton(torch.rand(1, 1, 5, 5), iterations=-1)


# --- soft clDice loss --------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_loss_matches_monai_for_one_image(spatial_dims: int) -> None:
    torch.manual_seed(1)
    logits = torch.randn(1, 1, *SHAPES[spatial_dims], dtype=torch.float64)
    target = (torch.rand(1, 1, *SHAPES[spatial_dims]) > 0.7).double()
    ours = soft_cldice_loss(logits, target, iterations=4, smooth=1.0)
    # MONAI takes probabilities (sigmoid=True applies it) and guards the harmonic mean with a tiny extra term.
    ref = SoftclDiceLoss(iter_=4, smooth_nr=1.0, smooth_dr=1.0, smooth=1e-12, sigmoid=True)(logits, target)
    torch.testing.assert_close(ours, ref)


def test_dice_plus_cldice_matches_monai_combined_loss() -> None:
    torch.manual_seed(2)
    logits = torch.randn(1, 1, 33, 34, dtype=torch.float64)
    target = (torch.rand(1, 1, 33, 34) > 0.6).double()
    # Our Dice adds ``smooth`` to tp and to the half-sums, MONAI's adds smooth_nr/smooth_dr to 2 tp and to
    # the full sums: smooth 0.5 here is MONAI's 1.0.
    dice = soft_dice_loss(logits, target, multiclass=False, smooth=0.5)
    ours = 0.3 * dice + 0.7 * soft_cldice_loss(logits, target, iterations=3)
    ref = SoftDiceclDiceLoss(iter_=3, alpha=0.7, smooth_nr=1.0, smooth_dr=1.0, smooth=1e-12, sigmoid=True)
    torch.testing.assert_close(ours, ref(logits, target))


def test_loss_sums_over_the_batch_unlike_monai_per_image_mean() -> None:
    line = _line(2)
    broken = line.clone()
    broken[..., 10:16] = 0.0
    empty = torch.zeros_like(line)
    alone = soft_cldice_loss(_logits(broken), line)
    # An image with nothing in it adds nothing to the sums: the batch loss is that of the other image.
    batch = soft_cldice_loss(torch.cat([_logits(broken), _logits(empty)]), torch.cat([line, empty]))
    torch.testing.assert_close(batch, alone)
    per_image = SoftclDiceLoss(iter_=10, smooth=1e-12, sigmoid=True)(
        torch.cat([_logits(broken), _logits(empty)]), torch.cat([line, empty])
    )
    torch.testing.assert_close(per_image, alone / 2, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("thickness", [1, 3])
def test_perfect_prediction_gives_zero_and_a_gap_does_not(spatial_dims: int, thickness: int) -> None:
    target = _line(spatial_dims, thickness)
    assert float(soft_cldice_loss(_logits(target), target)) < 1e-6
    broken = target.clone()
    broken[..., 9:13] = 0.0
    gap = float(soft_cldice_loss(_logits(broken), target))
    assert gap > 0.05


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_gradients_finite_for_ordinary_and_extreme_logits(spatial_dims: int) -> None:
    torch.manual_seed(3)
    target = _line(spatial_dims, thickness=2)
    for scale in (1.0, 100.0):
        logits = (torch.randn(1, 1, *SHAPES[spatial_dims]) * scale).requires_grad_()
        loss = soft_cldice_loss(logits, target, iterations=5)
        loss.backward()
        assert torch.isfinite(loss) and 0.0 <= loss.item() <= 1.0
        assert torch.isfinite(logits.grad).all()
    logits = torch.randn(1, 1, *SHAPES[spatial_dims], requires_grad=True)
    soft_cldice_loss(logits, target).backward()
    assert float(logits.grad.abs().sum()) > 0


def test_bf16_logits_are_computed_in_float32() -> None:
    torch.manual_seed(4)
    logits = torch.randn(1, 1, 33, 34)
    target = _line(2)
    loss = soft_cldice_loss(logits.bfloat16(), target)  # the dtype an autocast head returns
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, soft_cldice_loss(logits.bfloat16().float(), target))


def test_weight_map() -> None:
    torch.manual_seed(5)
    logits = torch.randn(2, 1, 33, 34, requires_grad=True)
    target = torch.cat([_line(2), _line(2, 3)])
    ones = torch.ones(2, 1, 33, 34)
    plain = soft_cldice_loss(logits, target)
    torch.testing.assert_close(soft_cldice_loss(logits, target, weight=ones), plain)
    zero = soft_cldice_loss(logits, target, weight=torch.zeros_like(ones))
    zero.backward()
    assert zero.item() == 0.0 and float(logits.grad.abs().sum()) == 0.0
    # Weighting out the second image leaves the loss of the first one alone.
    first_only = torch.cat([ones[:1], torch.zeros_like(ones[:1])])
    torch.testing.assert_close(
        soft_cldice_loss(logits, target, weight=first_only), soft_cldice_loss(logits[:1], target[:1])
    )
    with pytest.raises(BiosegError, match="negative"):
        soft_cldice_loss(logits, target, weight=-ones)


def test_loss_input_errors() -> None:
    with pytest.raises(BiosegError, match="1 channel"):
        soft_cldice_loss(torch.randn(1, 2, 9, 9), torch.zeros(1, 1, 9, 9))
    with pytest.raises(BiosegError, match="shape"):
        soft_cldice_loss(torch.randn(1, 1, 9, 9), torch.zeros(1, 1, 9, 8))
    with pytest.raises(BiosegError, match=r"\[0, 1\]"):
        soft_cldice_loss(torch.randn(1, 1, 9, 9), torch.full((1, 1, 9, 9), 255.0))
    with pytest.raises(BiosegError, match="smooth"):
        soft_cldice_loss(torch.randn(1, 1, 9, 9), torch.zeros(1, 1, 9, 9), smooth=0.0)


# --- registered term ---------------------------------------------------------------------------------


def test_registered_term_matches_function_and_checks_options() -> None:
    assert "cldice" in LOSSES
    torch.manual_seed(6)
    logits, target = torch.randn(2, 1, 17, 18), (torch.rand(2, 1, 17, 18) > 0.5).float()
    term = build_term("cldice", "binary", iterations=3, smooth=0.5)
    expected = soft_cldice_loss(logits, target, iterations=3, smooth=0.5)
    torch.testing.assert_close(term(logits, target), expected)
    default = build_term("cldice", "binary")
    assert default.options == {"iterations": 10, "smooth": 1.0}
    torch.testing.assert_close(default(logits, target), soft_cldice_loss(logits, target))
    with pytest.raises(BiosegError, match="binary heads only"):
        build_term("cldice", "multiclass")
    with pytest.raises(BiosegError, match="Did you mean 'iterations'"):
        build_term("cldice", "binary", iteration=3)
    for bad in ({"iterations": -1}, {"iterations": 2.5}, {"smooth": 0}, {"smooth": "a"}):
        with pytest.raises(BiosegError, match="cldice"):
            build_term("cldice", "binary", **bad)


def test_term_in_a_head_loss_with_bce_and_dice() -> None:
    torch.manual_seed(7)
    logits = torch.randn(1, 1, 17, 18, requires_grad=True)
    target = _line(2)[..., :17, :18].contiguous()
    head = HeadLoss("binary", [("bce", 1.0, {}), ("dice", 1.0, {}), ("cldice", 0.5, {"iterations": 3})])
    total, parts = head(logits, target)
    torch.testing.assert_close(parts["cldice"], soft_cldice_loss(logits, target, iterations=3).detach())
    total.backward()
    assert torch.isfinite(logits.grad).all()


# --- clDice metric on hard masks ---------------------------------------------------------------------


def _hline(shape: tuple[int, ...] = (21, 30), row: int = 10, cols: tuple[int, int] = (5, 25)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[row, cols[0] : cols[1]] = 1
    return mask


def test_metric_identical_masks_score_one_2d_and_3d() -> None:
    rng = np.random.default_rng(0)
    blobs = rng.random((20, 21)) > 0.6
    assert topology_scores(blobs, blobs) == {"tprec": 1.0, "tsens": 1.0, "cldice": 1.0}
    tube = np.zeros((9, 10, 11), bool)
    tube[3:6, 4:7, 1:-1] = True
    assert cldice_score(tube, tube) == 1.0
    cube = np.zeros((6, 6, 6), bool)  # the 3D thinning deletes a 2×2×2 cube: it must still count
    cube[2:4, 2:4, 2:4] = True
    assert cldice_score(cube, cube) == 1.0


def test_metric_broken_line_hand_computed() -> None:
    truth = _hline()  # 20 pixels, its own skeleton
    pred = truth.copy()
    pred[10, 13:17] = 0  # 4-pixel gap: pred's skeleton is its 16 pixels, all inside the truth
    scores = topology_scores(pred, truth)
    assert scores["tprec"] == 1.0
    assert scores["tsens"] == pytest.approx(16 / 20)
    assert scores["cldice"] == pytest.approx(2 * 0.8 / 1.8)


def test_metric_shifted_lines_and_thick_bars() -> None:
    # A 1-pixel line shifted by one pixel shares no pixel: nothing of either centreline is covered.
    assert cldice_score(_hline(row=11), _hline()) == 0.0
    # A 3-pixel bar shifted by one pixel: Dice is 2/3, but each centreline runs (all but its corner spurs)
    # inside the other bar.
    truth = np.zeros((21, 30), bool)
    truth[8:11, 4:26] = True
    pred = np.roll(truth, 1, axis=0)
    dice = 2 * np.count_nonzero(pred & truth) / (pred.sum() + truth.sum())
    assert dice == pytest.approx(2 / 3)
    assert cldice_score(pred, truth) > 0.95
    # Extra spurious branch outside the truth lowers precision only.
    spur = _hline() | _hline(row=3, cols=(8, 16))
    scores = topology_scores(spur, _hline())
    assert scores["tsens"] == 1.0 and scores["tprec"] == pytest.approx(20 / 28)


def test_metric_3d_broken_tube() -> None:
    truth = np.zeros((9, 10, 21), bool)
    truth[3:6, 4:7, 2:19] = True
    pred = truth.copy()
    pred[..., 9:12] = False
    scores = topology_scores(pred, truth)
    assert scores["tprec"] == 1.0
    assert 0.5 < scores["tsens"] < 1.0
    assert scores["cldice"] < 1.0


def test_metric_empty_masks() -> None:
    empty = np.zeros((9, 30), np.uint8)
    assert topology_scores(empty, empty) == {"tprec": 1.0, "tsens": 1.0, "cldice": 1.0}
    line = _hline((9, 30), row=4)
    assert topology_scores(empty, line) == {"tprec": 0.0, "tsens": 0.0, "cldice": 0.0}
    assert topology_scores(line, empty) == {"tprec": 0.0, "tsens": 0.0, "cldice": 0.0}


def test_metric_accepts_bool_int_and_tensors_and_rejects_bad_input() -> None:
    truth = _hline()
    pred = truth.copy()
    pred[10, 13:17] = 0
    expected = cldice_score(pred, truth)
    assert cldice_score(torch.from_numpy(pred), torch.from_numpy(truth * 255)) == expected
    assert cldice_score(pred.astype(bool), truth.astype(np.int64)) == expected
    with pytest.raises(BiosegError, match="threshold"):
        cldice_score(pred.astype(np.float32), truth)
    with pytest.raises(BiosegError, match="same"):
        cldice_score(pred, truth[:, :-1])
    with pytest.raises(BiosegError, match="2D"):
        cldice_score(pred[None, None], truth[None, None])
