"""``train.privacy``: differentially private training (Opacus, DP-SGD with Poisson sampling).

The privacy unit is one training image: each step draws every training image with probability
``batch_size / images`` (Poisson sampling, as Opacus defines it), takes one patch of each drawn image,
clips each image's gradient to ``max_grad_norm`` and adds Gaussian noise of ``noise_multiplier x
max_grad_norm``. The spent epsilon (at ``delta``) is accounted with Rényi DP.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from bioseg.config.section import Section


class PrivacyConfig(Section):
    noise_multiplier: float | None = Field(
        default=None, gt=0, description="noise std / max_grad_norm; None: computed so that the planned steps "
        "spend exactly target_epsilon",
    )
    max_grad_norm: float = Field(default=1.0, gt=0, description="each image's gradient is clipped to this L2 norm")
    target_epsilon: float | None = Field(
        default=None, gt=0, description="training stops before the spent epsilon would pass it; None: no limit"
    )
    delta: float = Field(default=1e-5, gt=0, lt=1, description="the delta of (epsilon, delta)-DP")

    @model_validator(mode="after")
    def _noise_or_target(self) -> PrivacyConfig:
        if self.noise_multiplier is None and self.target_epsilon is None:
            raise ValueError("give noise_multiplier, target_epsilon or both (target_epsilon alone: the noise is "
                             "computed for the planned steps)")  # fmt: skip
        return self


def check_private_training(train: Any) -> None:
    """Options of ``train`` that Opacus's per-image clipping and accounting cannot honour (ValueError)."""
    if train.privacy is None:
        return
    clashes = {
        "accumulate_grad_batches": (train.accumulate_grad_batches != 1, "1 (each Poisson batch is one step)"),
        "precision": (train.precision not in ("auto", "32"), "32 or auto (per-image gradients run in float32)"),
        "head_freezing": (train.head_freezing is not None, "null (the clipped parameters must stay the same)"),
        "freeze_encoder_epochs": (train.freeze_encoder_epochs != 0, "0 (the clipped parameters must stay the same)"),
    }
    for key, (clash, wanted) in clashes.items():
        if clash:
            raise ValueError(f"train.{key} is {getattr(train, key)!r}, which private training cannot do; set {wanted}")
