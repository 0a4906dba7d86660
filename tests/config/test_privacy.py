"""``train.privacy``: noise or a target is needed; options DP-SGD cannot honour are refused by name."""

import pytest

from bioseg import config
from bioseg.errors import BiosegError


def _cfg(train: dict):
    return config.from_dict({"data": {"root": "absent"}, "train": train})


def test_a_target_alone_or_a_noise_alone_is_enough():
    assert _cfg({"privacy": {"target_epsilon": 3}}).train.privacy.noise_multiplier is None
    p = _cfg({"privacy": {"noise_multiplier": 1.1}}).train.privacy
    assert (p.target_epsilon, p.delta, p.max_grad_norm) == (None, 1e-5, 1.0)
    assert _cfg({}).train.privacy is None


def test_neither_noise_nor_target_is_refused():
    with pytest.raises(BiosegError, match="noise_multiplier, target_epsilon or both"):
        _cfg({"privacy": {"delta": 1e-6}})


@pytest.mark.parametrize(
    ("option", "named"),
    [
        ({"accumulate_grad_batches": 2}, "train.accumulate_grad_batches is 2"),
        ({"precision": "bf16-mixed"}, "train.precision is 'bf16-mixed'"),
        ({"freeze_encoder_epochs": 3}, "train.freeze_encoder_epochs is 3"),
    ],
)
def test_options_private_training_cannot_honour_are_named(option, named):
    with pytest.raises(BiosegError, match=named):
        _cfg({"privacy": {"target_epsilon": 3}, **option})
    assert _cfg(option).train.privacy is None  # fine without privacy


def test_unknown_privacy_key_is_an_error():
    with pytest.raises(BiosegError, match="epsilon"):
        _cfg({"privacy": {"epsilon": 3}})
