"""Build models by registered name from plain keyword arguments (what the ``model`` config section holds)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from bioseg.errors import BiosegError
from bioseg.nn.unet import UNet
from bioseg.registry import Registry, did_you_mean

#: name → model class or builder called as ``builder(spatial_dims=, in_channels=, heads=, **options)``
MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
MODELS.register("unet")(UNet)

_COMMON = ("spatial_dims", "in_channels", "heads")


def model_options(name: str) -> list[str]:
    """The keyword options model ``name`` accepts besides spatial_dims, in_channels and heads."""
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = inspect.signature(MODELS.get(name)).parameters.values()
    return [p.name for p in params if p.kind in named and p.name not in _COMMON]


def create_model(
    name: str, *, spatial_dims: int, in_channels: int, heads: Mapping[str, int], **kwargs: Any
) -> nn.Module:
    """The model registered as ``name``; ``kwargs`` are its own options (e.g. widths, norm, residual,
    upsample, dropout for ``unet``). The model maps ``(N, in_channels, *spatial)`` to
    ``{head: (N, heads[head], *spatial)}``. Unknown names or options raise BiosegError with a suggestion."""
    builder = MODELS.get(name)
    valid = model_options(name)
    for key in kwargs:
        if key not in valid:
            raise BiosegError(
                f"unknown option '{key}' for model '{name}'; valid: {', '.join(valid)}."
                + did_you_mean(key, valid)
            )
    return builder(spatial_dims=spatial_dims, in_channels=in_channels, heads=dict(heads), **kwargs)


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return MODELS.names()


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameter elements of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
