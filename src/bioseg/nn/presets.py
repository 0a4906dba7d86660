"""Named UNet presets, registered in :data:`bioseg.nn.factory.MODELS`.

A preset is a UNet with other defaults; every UNet option can still be overridden, e.g.
``create_model("hoppernet_lite", spatial_dims=2, in_channels=3, heads={...}, dropout=0.1)``.

- ``hoppernet_lite``: compact multi-head UNet for first-pass multi-task segmentation of downsampled
  whole images (e.g. insect wings at 512² with wing, veins, spots and domain heads). GroupNorm, so it
  trains the same with batches of one or two large images; widths (8, 16, 24, 32, 32), four
  downsamplings (inputs a multiple of 16). With in_channels 3 and heads wing 1, veins 1, spots 1,
  domains 4 it has 109,415 trainable parameters in 2D.
- ``hoppernet``: the same layout 4× wider, widths (32, 64, 96, 128, 128): 1,737,095 parameters for the
  same heads in 2D.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from bioseg.errors import BiosegError
from bioseg.nn.factory import MODELS
from bioseg.nn.unet import UNet
from bioseg.registry import did_you_mean

__all__ = ["PRESETS", "hoppernet", "hoppernet_lite"]

#: preset name → UNet defaults it changes
PRESETS: dict[str, dict[str, Any]] = {
    "hoppernet_lite": {"widths": (8, 16, 24, 32, 32), "norm": "group"},
    "hoppernet": {"widths": (32, 64, 96, 128, 128), "norm": "group"},
}


def _preset(name: str) -> Callable[..., nn.Module]:
    """Builder for preset ``name`` whose signature is UNet's with the preset's defaults, so that
    ``model_options`` lists every UNet option and ``create_model`` checks overrides against them."""
    defaults = PRESETS[name]
    signature = inspect.signature(UNet)
    params = [p.replace(default=defaults.get(p.name, p.default)) for p in signature.parameters.values()]
    signature = signature.replace(parameters=params)

    def build(*args: Any, **kwargs: Any) -> nn.Module:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as err:
            valid = list(signature.parameters)
            unknown = [k for k in kwargs if k not in valid]
            hint = did_you_mean(unknown[0], valid) if unknown else ""
            raise BiosegError(f"model '{name}': {err}; valid options: {', '.join(valid)}.{hint}") from None
        bound.apply_defaults()
        return UNet(**bound.arguments)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (
        f"UNet preset '{name}' ({', '.join(f'{k}={v!r}' for k, v in defaults.items())}); any UNet option can "
        f"be overridden. Maps ``(N, in_channels, *spatial)`` to ``{{head: (N, heads[head], *spatial)}}``."
    )
    build.__signature__ = signature  # type: ignore[attr-defined]
    return build


hoppernet_lite = MODELS.register("hoppernet_lite")(_preset("hoppernet_lite"))
hoppernet = MODELS.register("hoppernet")(_preset("hoppernet"))
