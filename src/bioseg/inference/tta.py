"""Test-time augmentation: the views of an image that a segmentation model should answer alike.

A view flips some spatial axes and then turns the image by quarter turns in its last two axes; its
inverse undoes both, so that the prediction of a view maps back pixel for pixel onto the image. 2D images
get the 8 symmetries of the square (the dihedral group: 4 turns, each with or without a mirror); 3D
stacks get those 8 in the YX plane, each with and without a flip along z — 16 views. Z is never
swapped with Y or X: stacks are usually anisotropic and a model trained on them never saw z lying
sideways.

Views act on arrays or tensors ``(C, *spatial)``: the channel axis (classes of a head) is left alone.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

Array = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class View:
    """Flip the spatial axes ``flips`` (0 = the first spatial axis), then turn ``turns`` quarter turns
    in the last two axes (from the second-last towards the last, as ``rot90``)."""

    flips: tuple[int, ...] = ()
    turns: int = 0

    def apply(self, x: Array) -> Array:
        """``(C, *spatial)`` → the view of it; Y and X sizes swap for an odd number of turns."""
        x = _flip(x, tuple(1 + a for a in self.flips))
        return _rot90(x, self.turns)

    def invert(self, y: Array) -> Array:
        """The view's output ``(K, *view spatial)`` mapped back onto the image's pixels."""
        y = _rot90(y, -self.turns)
        return _flip(y, tuple(1 + a for a in self.flips))

    @property
    def is_identity(self) -> bool:
        return not self.flips and self.turns % 4 == 0


IDENTITY = View()


def views(spatial_dims: int) -> list[View]:
    """All test-time views for ``spatial_dims`` (2: 8 views, 3: 16), the identity first."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    y_axis = spatial_dims - 2  # the second-last spatial axis
    plane = [((), t) for t in range(4)] + [((y_axis,), t) for t in range(4)]
    if spatial_dims == 2:
        return [View(f, t) for f, t in plane]
    return [View((0, *f) if z else f, t) for z, (f, t) in itertools.product((False, True), plane)]


def views_for(spatial_dims: int, tta: bool) -> list[View]:
    """The views a prediction averages: all of them with ``tta``, else the image as it is."""
    return views(spatial_dims) if tta else [IDENTITY]


def _flip(x: Array, axes: tuple[int, ...]) -> Array:
    if not axes:
        return x
    if isinstance(x, torch.Tensor):
        return torch.flip(x, axes)
    return np.flip(x, axes)


def _rot90(x: Array, turns: int) -> Array:
    turns %= 4
    if not turns:
        return x
    if isinstance(x, torch.Tensor):
        return torch.rot90(x, turns, dims=(-2, -1))
    return np.rot90(x, turns, axes=(-2, -1))
