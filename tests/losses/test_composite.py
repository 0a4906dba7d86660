"""The composite loss: weighted terms per head, weighted heads, heads without a target."""

from __future__ import annotations

import pytest
import torch
from helpers import binary_batch, multiclass_batch, pixel_weight
from pydantic import ValidationError

from bioseg.config import HeadConfig, LossTerm, from_dict
from bioseg.errors import BiosegError
from bioseg.losses import (
    CompositeLoss,
    HeadLoss,
    bce_loss,
    build_loss,
    ce_loss,
    iou_loss,
    soft_dice_loss,
)


def test_head_loss_sums_weighted_terms_and_reports_parts() -> None:
    logits, target = binary_batch(2)
    w = pixel_weight(logits)
    head = HeadLoss("binary", [("bce", 0.3, {"pos_weight": 2.0}), ("dice", 0.7, {}), ("dice", 1.5, {"smooth": 1.0})])
    total, parts = head(logits, target, w)
    bce = bce_loss(logits, target, w, pos_weight=2.0)
    dice = soft_dice_loss(logits, target, multiclass=False, weight=w)
    dice_smooth = soft_dice_loss(logits, target, multiclass=False, weight=w, smooth=1.0)
    assert list(parts) == ["bce", "dice", "dice_2"]
    torch.testing.assert_close(parts["bce"], bce)
    torch.testing.assert_close(parts["dice_2"], dice_smooth)
    torch.testing.assert_close(total, 0.3 * bce + 0.7 * dice + 1.5 * dice_smooth)
    assert not parts["bce"].requires_grad


def _two_heads() -> dict[str, HeadConfig]:
    return {
        "fg": HeadConfig(type="binary", weight=2.0, loss=[LossTerm(name="bce", weight=0.5), LossTerm(name="dice")]),
        "cls": HeadConfig(
            type="multiclass",
            classes=3,
            weight=0.5,
            loss=[
                LossTerm(name="ce", weight=1.0, class_weights=[1, 2, 3]),
                LossTerm(name="jaccard", weight=0.2),
            ],
        ),
    }


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_composite_sums_heads_with_weights(spatial_dims: int) -> None:
    fg_logits, fg_target = binary_batch(spatial_dims)
    cls_logits, cls_target = multiclass_batch(spatial_dims, seed=3)
    w = pixel_weight(fg_logits)
    loss = build_loss(_two_heads())
    total, logs = loss({"fg": fg_logits, "cls": cls_logits}, {"fg": fg_target, "cls": cls_target}, {"fg": w})
    fg = 0.5 * bce_loss(fg_logits, fg_target, w) + soft_dice_loss(fg_logits, fg_target, multiclass=False, weight=w)
    cls = ce_loss(cls_logits, cls_target, class_weights=[1, 2, 3]) + 0.2 * iou_loss(
        cls_logits, cls_target, multiclass=True
    )
    torch.testing.assert_close(total, 2.0 * fg + 0.5 * cls)
    assert set(logs) == {"fg/bce", "fg/dice", "fg/total", "cls/ce", "cls/jaccard", "cls/total"}
    torch.testing.assert_close(logs["fg/total"], fg)
    torch.testing.assert_close(logs["cls/ce"], ce_loss(cls_logits, cls_target, class_weights=[1, 2, 3]))


def test_composite_head_without_target_contributes_nothing() -> None:
    fg_logits, fg_target = binary_batch(2)
    cls_logits, _ = multiclass_batch(2)
    fg_logits.requires_grad_(True)
    cls_logits.requires_grad_(True)
    loss = CompositeLoss(_two_heads())
    total, logs = loss({"fg": fg_logits, "cls": cls_logits}, {"fg": fg_target, "unused": fg_target})
    expected = 2.0 * (0.5 * bce_loss(fg_logits, fg_target) + soft_dice_loss(fg_logits, fg_target, multiclass=False))
    torch.testing.assert_close(total, expected)
    assert not any(k.startswith("cls/") for k in logs)
    total.backward()
    assert cls_logits.grad is not None and float(cls_logits.grad.abs().max()) == 0.0
    assert float(fg_logits.grad.abs().max()) > 0

    # no targets at all: a zero loss that can still be back-propagated
    fresh = cls_logits.detach().clone().requires_grad_(True)
    total, logs = loss({"fg": fg_logits.detach(), "cls": fresh}, {})
    assert total.item() == 0.0 and logs == {}
    total.backward()


def test_composite_from_experiment_config_defaults() -> None:
    cfg = from_dict(
        {
            "data": {"root": "data", "classes": ["bg", "a", "b"]},
            "heads": {"mask": {"type": "multiclass", "classes": 3}, "fg": {"type": "binary"}},
        }
    )
    loss = build_loss(cfg.heads)
    _, labels = multiclass_batch(2)
    mc_logits, _ = multiclass_batch(2, seed=5)
    b_logits, b_target = binary_batch(2)
    total, logs = loss({"mask": mc_logits, "fg": b_logits}, {"mask": labels, "fg": b_target})
    assert set(logs) == {"mask/ce", "mask/dice", "mask/total", "fg/bce", "fg/dice", "fg/total"}
    torch.testing.assert_close(total, logs["mask/total"] + logs["fg/total"])
    # plain mappings work too, with loss: None meaning the default
    loss2 = build_loss({"fg": {"type": "binary", "loss": None}})
    total2, _ = loss2({"fg": b_logits}, {"fg": b_target})
    torch.testing.assert_close(total2, logs["fg/total"])


def test_composite_errors_are_helpful() -> None:
    with pytest.raises(BiosegError, match="head 'fg': loss 'ce' does not fit a binary head; use 'bce'"):
        build_loss({"fg": HeadConfig(type="binary", loss=[LossTerm(name="ce")])})
    # an option no term declares is refused as soon as the config entry is made
    with pytest.raises(ValidationError, match="loss 'dice' has no option 'smoth'"):
        LossTerm(name="dice", smoth=1.0)
    with pytest.raises(BiosegError, match="head 'fg': 'loss.0': loss 'dice' has no option 'smoth'"):
        build_loss({"fg": {"type": "binary", "loss": [{"name": "dice", "smoth": 1.0}]}})
    with pytest.raises(BiosegError, match="at least one loss term"):
        build_loss({"fg": HeadConfig(type="binary", loss=[])})
    loss = build_loss(_two_heads())
    logits, target = binary_batch(2)
    with pytest.raises(BiosegError, match="model outputs only fg"):
        loss({"fg": logits}, {"fg": target, "cls": target.long().squeeze(1)})


def test_composite_loss_decreases_when_optimised() -> None:
    _, target = binary_batch(2)
    logits = torch.zeros_like(target, requires_grad=True)
    loss = build_loss({"mask": HeadConfig(type="binary")})
    opt = torch.optim.Adam([logits], lr=0.5)
    first = None
    for _ in range(15):
        opt.zero_grad()
        total, _ = loss({"mask": logits}, {"mask": target})
        first = total.item() if first is None else first
        total.backward()
        opt.step()
    assert total.item() < 0.1 * first
