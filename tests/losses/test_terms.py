"""Loss terms by name: the registry, option checks with did-you-mean, head-type fit, class-weight buffers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import SPATIAL, binary_batch, multiclass_batch

from bioseg.errors import BiosegError
from bioseg.losses import (
    LOSSES,
    bce_loss,
    build_term,
    ce_loss,
    soft_dice_loss,
)


def test_registry_names_and_alias() -> None:
    assert {"bce", "ce", "dice", "focal", "iou", "jaccard", "tversky"} <= set(LOSSES.names())
    assert LOSSES.get("jaccard") is LOSSES.get("iou")
    with pytest.raises(BiosegError, match="Did you mean 'dice'"):
        LOSSES.get("dise")


def test_unknown_kwarg_names_loss_key_valid_keys_and_suggestion() -> None:
    with pytest.raises(BiosegError) as err:
        build_term("bce", "binary", pos_weigth=2.0)
    msg = str(err.value)
    assert "'bce'" in msg and "'pos_weigth'" in msg and "pos_weight" in msg and "Did you mean 'pos_weight'" in msg
    with pytest.raises(BiosegError, match="valid options: alpha, beta, class_weights"):
        build_term("tversky", "multiclass", gama=2)


@pytest.mark.parametrize(("name", "head", "instead"), [("ce", "binary", "bce"), ("bce", "multiclass", "ce")])
def test_wrong_head_type_says_what_to_use(name: str, head: str, instead: str) -> None:
    with pytest.raises(BiosegError, match=f"does not fit a {head} head; use '{instead}' instead"):
        build_term(name, head)


@pytest.mark.parametrize(
    ("name", "head", "kwargs", "pattern"),
    [
        ("dice", "binary", {"class_weights": [1, 2]}, "applies to multiclass heads only"),
        ("focal", "binary", {"alpha": [0.2, 0.8]}, "one number in"),
        ("focal", "multiclass", {"gamma": -1}, "'gamma' must be >= 0"),
        ("ce", "multiclass", {"label_smoothing": "a"}, "'label_smoothing' must be a number"),
        ("ce", "multiclass", {"class_weights": [-1, 1]}, r"'class_weights\[0\]' must be >= 0"),
        ("dice", "multiclass", {"smooth": 0}, "'smooth' must be > 0"),
        ("bce", "binary", {"pos_weight": 0}, "'pos_weight' must be > 0"),
        ("dice", "gray", {}, "unknown head type 'gray'"),
    ],
)
def test_bad_values_raise_biosegerror(name: str, head: str, kwargs: dict, pattern: str) -> None:
    with pytest.raises(BiosegError, match=pattern):
        build_term(name, head, **kwargs)


def test_class_weights_length_checked_against_logits() -> None:
    logits, target = multiclass_batch(2, classes=3)
    with pytest.raises(BiosegError, match="class_weights has 2 values but the head has 3 classes"):
        build_term("ce", "multiclass", class_weights=[1.0, 2.0])(logits, target)


def test_bad_inputs_raise_biosegerror() -> None:
    logits, target = binary_batch(2)
    with pytest.raises(BiosegError, match=r"values in \[0, 1\]"):
        bce_loss(logits, target * 255)
    with pytest.raises(BiosegError, match="shape"):
        bce_loss(logits, target[..., :-1])
    with pytest.raises(BiosegError, match="binary head needs logits with 1 channel"):
        soft_dice_loss(torch.cat([logits, logits], 1), target, multiclass=False)
    mc_logits, labels = multiclass_batch(2)
    with pytest.raises(BiosegError, match="set ignore_index"):
        ce_loss(mc_logits, labels + 1)
    with pytest.raises(BiosegError, match="integer class indices"):
        ce_loss(mc_logits, labels.float())
    with pytest.raises(BiosegError, match="negative"):
        ce_loss(mc_logits, labels, weight=-torch.ones(2, 1, *SPATIAL[2]))


def test_class_weight_buffers_follow_module_but_not_state_dict() -> None:
    term = build_term("ce", "multiclass", class_weights=[1.0, 2.0, 3.0])
    assert term.state_dict() == {}
    term = term.double()
    assert term.class_weights.dtype == torch.float64
    logits, target = multiclass_batch(2)
    torch.testing.assert_close(term(logits, target), ce_loss(logits, target, class_weights=[1.0, 2.0, 3.0]))


def test_bce_class_weights_weigh_each_pixel_by_its_true_class():

    from bioseg.losses.terms import build_term

    torch.manual_seed(0)
    logits, target = torch.randn(2, 1, 9, 11), (torch.rand(2, 1, 9, 11) > 0.7).float()
    term = build_term("bce", "binary", class_weights=[0.5, 4.0])
    w = 0.5 + 3.5 * target
    reference = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * w).sum() / w.sum()
    assert torch.allclose(term(logits, target), reference, atol=1e-6)
    with pytest.raises(BiosegError, match="takes two"):
        build_term("bce", "binary", class_weights=[1, 2, 3])
