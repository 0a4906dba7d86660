"""The loss functions against PyTorch and MONAI references, and their invariants (weights, ignore index, bf16)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import TOL, binary_batch, multiclass_batch, pixel_weight
from monai.losses import DiceLoss, FocalLoss, TverskyLoss

from bioseg.losses import (
    bce_loss,
    build_term,
    ce_loss,
    focal_loss,
    iou_loss,
    soft_dice_loss,
    tversky_loss,
)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("pos_weight", [None, 3.0])
def test_bce_matches_torch(spatial_dims: int, pos_weight: float | None) -> None:
    logits, target = binary_batch(spatial_dims)
    pw = None if pos_weight is None else torch.tensor([pos_weight])
    ref = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw)
    torch.testing.assert_close(bce_loss(logits, target, pos_weight=pos_weight), ref, **TOL)
    # the registered term gives the same value
    term = build_term("bce", "binary", **({} if pos_weight is None else {"pos_weight": pos_weight}))
    torch.testing.assert_close(term(logits, target), ref, **TOL)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_bce_pixel_weight_is_weighted_mean(spatial_dims: int) -> None:
    logits, target = binary_batch(spatial_dims)
    w = pixel_weight(logits)
    ref = F.binary_cross_entropy_with_logits(logits, target, weight=w, reduction="sum") / w.sum()
    torch.testing.assert_close(bce_loss(logits, target, weight=w), ref, **TOL)
    # a 0/1 weight is the same as keeping only the selected pixels
    keep = w > 0
    ref_sel = F.binary_cross_entropy_with_logits(logits[keep], target[keep])
    torch.testing.assert_close(bce_loss(logits, target, weight=keep.float()), ref_sel, **TOL)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"class_weights": [0.2, 1.0, 3.0]},
        {"ignore_index": 255},
        {"class_weights": [0.5, 2.0, 1.0], "ignore_index": 1, "label_smoothing": 0.1},
    ],
)
def test_ce_matches_torch(spatial_dims: int, kwargs: dict) -> None:
    logits, target = multiclass_batch(spatial_dims)
    if kwargs.get("ignore_index") == 255:
        target = target.clone()
        target[:, :3] = 255  # ignored label outside [0, C)
    ref = F.cross_entropy(
        logits,
        target,
        weight=torch.tensor(kwargs["class_weights"]) if "class_weights" in kwargs else None,
        ignore_index=kwargs.get("ignore_index", -100),
        label_smoothing=kwargs.get("label_smoothing", 0.0),
    )
    torch.testing.assert_close(ce_loss(logits, target, **kwargs), ref, **TOL)
    torch.testing.assert_close(build_term("ce", "multiclass", **kwargs)(logits, target), ref, **TOL)
    # a channel axis on the target is accepted
    torch.testing.assert_close(ce_loss(logits, target.unsqueeze(1), **kwargs), ref, **TOL)


def test_ce_pixel_weight_zero_equals_ignore_index() -> None:
    logits, target = multiclass_batch(2)
    target = target.clone()
    target[0, 4:9] = 7
    keep = (target != 7).unsqueeze(1).float()
    cw = [1.0, 2.0, 0.5]
    by_index = ce_loss(logits, target, class_weights=cw, ignore_index=7)
    by_weight = ce_loss(logits, torch.where(target == 7, 0, target), weight=keep, class_weights=cw)
    torch.testing.assert_close(by_index, by_weight, **TOL)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_focal_binary_matches_monai(spatial_dims: int, alpha: float | None, gamma: float) -> None:
    logits, target = binary_batch(spatial_dims)
    ref = FocalLoss(gamma=gamma, alpha=alpha, use_softmax=False)(logits, target)
    torch.testing.assert_close(focal_loss(logits, target, multiclass=False, alpha=alpha, gamma=gamma), ref, **TOL)
    if gamma == 0.0 and alpha is None:  # focal without focusing is BCE
        torch.testing.assert_close(ref, bce_loss(logits, target), **TOL)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("alpha", [None, 0.25, [0.2, 0.3, 0.5]])
def test_focal_multiclass_matches_monai(spatial_dims: int, alpha: float | list | None) -> None:
    logits, target = multiclass_batch(spatial_dims)
    ref = FocalLoss(gamma=2.0, alpha=alpha, use_softmax=True, to_onehot_y=True)(logits, target.unsqueeze(1))
    ours = focal_loss(logits, target, multiclass=True, alpha=alpha, gamma=2.0)
    # MONAI averages over the class axis too: its value is ours / C
    torch.testing.assert_close(ours, ref * logits.shape[1], **TOL)


def test_focal_multiclass_without_focusing_is_ce() -> None:
    logits, target = multiclass_batch(3)
    w = pixel_weight(logits)
    torch.testing.assert_close(
        focal_loss(logits, target, multiclass=True, gamma=0.0, weight=w),
        ce_loss(logits, target, weight=w),
        **TOL,
    )


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_dice_binary_matches_monai(spatial_dims: int) -> None:
    logits, target = binary_batch(spatial_dims)
    ref = DiceLoss(sigmoid=True, batch=True)(logits, target)
    torch.testing.assert_close(soft_dice_loss(logits, target, multiclass=False), ref, **TOL)
    torch.testing.assert_close(build_term("dice", "binary")(logits, target), ref, **TOL)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("include_background", [True, False])
def test_dice_multiclass_matches_monai(spatial_dims: int, include_background: bool) -> None:
    logits, target = multiclass_batch(spatial_dims, classes=4)
    y = target.unsqueeze(1)
    ref = DiceLoss(softmax=True, to_onehot_y=True, batch=True, include_background=include_background)(logits, y)
    ours = soft_dice_loss(logits, target, multiclass=True, include_background=include_background)
    torch.testing.assert_close(ours, ref, **TOL)


def test_dice_class_weights_are_a_weighted_class_mean() -> None:
    logits, target = multiclass_batch(2, classes=3)
    cw = [0.5, 1.0, 2.5]
    # MONAI multiplies per-class losses by the weights then takes a plain mean; ours is normalised
    ref = DiceLoss(softmax=True, to_onehot_y=True, batch=True, weight=cw)(logits, target.unsqueeze(1))
    ours = soft_dice_loss(logits, target, multiclass=True, class_weights=cw)
    torch.testing.assert_close(ours, ref * len(cw) / sum(cw), **TOL)
    term = build_term("dice", "multiclass", class_weights=cw)
    torch.testing.assert_close(term(logits, target), ours, **TOL)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("multiclass", [False, True])
def test_tversky_matches_monai(spatial_dims: int, multiclass: bool) -> None:
    alpha, beta = 0.3, 0.7
    if multiclass:
        logits, target = multiclass_batch(spatial_dims)
        ref = TverskyLoss(softmax=True, to_onehot_y=True, batch=True, alpha=alpha, beta=beta)(
            logits, target.unsqueeze(1)
        )
    else:
        logits, target = binary_batch(spatial_dims)
        ref = TverskyLoss(sigmoid=True, batch=True, alpha=alpha, beta=beta)(logits, target)
    ours = tversky_loss(logits, target, multiclass=multiclass, alpha=alpha, beta=beta)
    torch.testing.assert_close(ours, ref, **TOL)
    head = "multiclass" if multiclass else "binary"
    term = build_term("tversky", head, alpha=alpha, beta=beta)
    torch.testing.assert_close(term(logits, target), ref, **TOL)


@pytest.mark.parametrize("multiclass", [False, True])
def test_iou_matches_monai_jaccard_and_special_cases(multiclass: bool) -> None:
    if multiclass:
        logits, target = multiclass_batch(3)
        ref = DiceLoss(softmax=True, to_onehot_y=True, batch=True, jaccard=True, smooth_nr=0, smooth_dr=0)(
            logits, target.unsqueeze(1)
        )
    else:
        logits, target = binary_batch(3)
        ref = DiceLoss(sigmoid=True, batch=True, jaccard=True, smooth_nr=0, smooth_dr=0)(logits, target)
    torch.testing.assert_close(iou_loss(logits, target, multiclass=multiclass, smooth=0.0), ref, **TOL)
    iou = iou_loss(logits, target, multiclass=multiclass)
    dice = soft_dice_loss(logits, target, multiclass=multiclass)
    # Tversky(1, 1) is Jaccard, Tversky(0.5, 0.5) is Dice; IoU = D / (2 - D) in score terms
    torch.testing.assert_close(tversky_loss(logits, target, multiclass=multiclass, alpha=1, beta=1), iou, **TOL)
    torch.testing.assert_close(tversky_loss(logits, target, multiclass=multiclass), dice, **TOL)
    if not multiclass:
        d = 1 - dice
        torch.testing.assert_close(1 - iou, d / (2 - d), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_perfect_prediction_gives_zero_region_loss(spatial_dims: int) -> None:
    _, target = binary_batch(spatial_dims)
    logits = 30.0 * (2 * target - 1)
    for fn in (soft_dice_loss, iou_loss, tversky_loss):
        assert float(fn(logits, target, multiclass=False)) < 1e-6
    # a wrong prediction is far from zero
    assert float(soft_dice_loss(-logits, target, multiclass=False)) > 0.99

    logits_mc, labels = multiclass_batch(spatial_dims, classes=3)
    perfect = 30.0 * F.one_hot(labels, 3).movedim(-1, 1).float()
    for fn in (soft_dice_loss, iou_loss, tversky_loss):
        assert float(fn(perfect, labels, multiclass=True)) < 1e-6
    assert float(soft_dice_loss(logits_mc, labels, multiclass=True)) > 0.2


ALL_TERMS = [
    ("bce", "binary"),
    ("dice", "binary"),
    ("focal", "binary"),
    ("iou", "binary"),
    ("tversky", "binary"),
    ("ce", "multiclass"),
    ("dice", "multiclass"),
    ("focal", "multiclass"),
    ("iou", "multiclass"),
    ("tversky", "multiclass"),
]


def _batch(head: str, spatial_dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    return binary_batch(spatial_dims) if head == "binary" else multiclass_batch(spatial_dims)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize(("name", "head"), ALL_TERMS)
def test_all_zero_weight_gives_zero_loss_and_zero_gradient(name: str, head: str, spatial_dims: int) -> None:
    logits, target = _batch(head, spatial_dims)
    logits.requires_grad_(True)
    weight = torch.zeros((logits.shape[0], 1, *logits.shape[2:]))
    loss = build_term(name, head)(logits, target, weight)
    assert torch.isfinite(loss) and loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all() and float(logits.grad.abs().max()) == 0.0


@pytest.mark.parametrize(("name", "head"), ALL_TERMS)
def test_zero_weight_on_a_sample_equals_leaving_it_out(name: str, head: str) -> None:
    logits, target = _batch(head, 3)
    weight = torch.ones((2, 1, *logits.shape[2:]))
    weight[1] = 0.0  # the second sample lacks a mask
    term = build_term(name, head)
    torch.testing.assert_close(term(logits, target, weight), term(logits[:1], target[:1]), **TOL)


@pytest.mark.parametrize(("name", "head"), ALL_TERMS)
def test_gradients_are_finite_for_saturated_logits(name: str, head: str) -> None:
    logits, target = _batch(head, 2)
    logits = (logits.sign() * 200.0).requires_grad_(True)  # probabilities round to exactly 0 or 1
    w = pixel_weight(logits)
    kwargs = {"gamma": 0.5} if name == "focal" else {}
    loss = build_term(name, head, **kwargs)(logits, target, w)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize(("name", "head"), ALL_TERMS)
def test_bf16_logits_are_computed_in_float32(name: str, head: str) -> None:
    logits, target = _batch(head, 2)
    term = build_term(name, head)
    low = term(logits.bfloat16(), target)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, term(logits.bfloat16().float(), target))


def test_ignore_index_in_region_terms_equals_zero_weight() -> None:
    logits, target = multiclass_batch(2)
    labelled = target.clone()
    labelled[:, 5:9] = 255
    keep = (labelled != 255).unsqueeze(1).float()
    for name in ("dice", "iou", "tversky", "focal"):
        by_index = build_term(name, "multiclass", ignore_index=255)(logits, labelled)
        by_weight = build_term(name, "multiclass")(logits, target, keep)
        torch.testing.assert_close(by_index, by_weight, **TOL)


def test_soft_binary_targets_are_accepted() -> None:
    logits, _ = binary_batch(2)
    soft = torch.sigmoid(logits.detach() * 0.3)
    ref = F.binary_cross_entropy_with_logits(logits, soft)
    torch.testing.assert_close(bce_loss(logits, soft), ref, **TOL)
    assert torch.isfinite(soft_dice_loss(logits, soft, multiclass=False))
