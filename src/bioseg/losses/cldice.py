"""Soft clDice loss for thin, tubular structures (veins, vessels, neurites), 2D and 3D.

clDice (Shit et al., CVPR 2021) compares each mask with the *skeleton* of the other: topology precision
is the part of the predicted skeleton that lies inside the target, topology sensitivity the part of the
target skeleton that the prediction covers; clDice is their harmonic mean. A break in a thin line costs
little Dice but a large share of the skeleton, so the loss pushes towards connected predictions.

The skeleton is made differentiable with iterated soft morphology: erosion is a min-pool over a
3-pixel cross, dilation a max-pool over a 3×3(×3) box, and each iteration adds what an opening removes.
``iterations`` should reach the largest structure radius in pixels; thicker parts are only partly thinned.

Same conventions as :mod:`bioseg.losses.functional`: logits in, one sigmoid inside, sums over the whole
batch, optional pixel-weight map on every sum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from bioseg.errors import BiosegError
from bioseg.losses import functional as LF
from bioseg.losses.terms import LossModule, _registered

__all__ = ["ClDiceTerm", "soft_cldice_loss", "soft_skeleton"]

_MAX_POOLS = {4: F.max_pool2d, 5: F.max_pool3d}


def _pool_axis(x: Tensor, axis: int) -> Tensor:
    """Max over a window of 3 along spatial ``axis`` (0-based), same size out; outside counts as -inf."""
    spatial = x.ndim - 2
    kernel = [1] * spatial
    padding = [0] * spatial
    kernel[axis], padding[axis] = 3, 1
    return _MAX_POOLS[x.ndim](x, kernel, stride=1, padding=padding)


def _soft_erode(x: Tensor) -> Tensor:
    # Min over a cross (the centre and its 2*dims face neighbours): the min of the per-axis 3-windows.
    out = -_pool_axis(-x, 0)
    for axis in range(1, x.ndim - 2):
        out = torch.minimum(out, -_pool_axis(-x, axis))
    return out


def _soft_dilate(x: Tensor) -> Tensor:
    # Max over the full 3×3(×3) box; max is separable, so one 3-window per axis gives the same values.
    for axis in range(x.ndim - 2):
        x = _pool_axis(x, axis)
    return x


def soft_skeleton(prob: Tensor, iterations: int = 10) -> Tensor:
    """Soft morphological skeleton of a probability map.

    Args:
        prob: ``(N, C, *spatial)`` values in [0, 1], 2 or 3 spatial axes.
        iterations: erosion steps; structures up to about this radius (pixels) are thinned to a line.

    Returns:
        ``(N, C, *spatial)`` soft skeleton in [0, 1]; a hard 1-pixel-wide line is its own skeleton.
    """
    if prob.ndim not in _MAX_POOLS:
        raise BiosegError(
            f"soft_skeleton got shape {tuple(prob.shape)}; "
            "expected (N, C, H, W) for 2D or (N, C, D, H, W) for 3D"
        )
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise BiosegError(f"iterations is {iterations!r}; it must be an integer >= 0 (e.g. 10)")
    # The erosion inside each opening is the next iteration's image, so it is computed once.
    eroded = _soft_erode(prob)
    skel = F.relu(prob - _soft_dilate(eroded))
    for _ in range(iterations):
        prob = eroded
        eroded = _soft_erode(prob)
        delta = F.relu(prob - _soft_dilate(eroded))
        skel = skel + F.relu(delta - skel * delta)
    return skel


def soft_cldice_loss(
    logits: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    iterations: int = 10,
    smooth: float = 1.0,
) -> Tensor:
    """Soft clDice loss ``1 - 2 Tprec Tsens / (Tprec + Tsens)`` of a binary head.

    With ``p = sigmoid(logits)``, ``g = target`` and soft skeletons ``S_p``, ``S_g``::

        Tprec = (sum(w S_p g) + smooth) / (sum(w S_p) + smooth)
        Tsens = (sum(w S_g p) + smooth) / (sum(w S_g) + smooth)

    Sums run over the batch and all spatial axes (like the other region losses here; MONAI's
    ``SoftclDiceLoss`` scores each image and averages, which is the same for a batch of one). Both ratios
    stay positive for ``smooth > 0``, so the harmonic mean needs no further guard. An all-zero weight map
    gives 0. The skeletons are taken of the unweighted maps.

    Args:
        logits: ``(N, 1, *spatial)``.
        target: ``(N, 1, *spatial)`` (or ``(N, *spatial)``) in [0, 1].
        weight: optional ``(N, 1, *spatial)`` non-negative pixel weights on every sum.
        iterations: soft skeleton iterations (about the largest structure radius in pixels).
        smooth: > 0, added to numerators and denominators.

    Returns:
        Scalar tensor in [0, 1].
    """
    if not smooth > 0:
        raise BiosegError(f"clDice smooth is {smooth!r}; it must be > 0 (e.g. 1.0)")
    logits, target, weight = LF._prepare_binary(logits, target, weight)
    prob = torch.sigmoid(logits)
    skel_pred = soft_skeleton(prob, iterations)
    skel_true = soft_skeleton(target, iterations)
    if weight is not None:
        skel_pred, skel_true = skel_pred * weight, skel_true * weight
    tprec = ((skel_pred * target).sum() + smooth) / (skel_pred.sum() + smooth)
    tsens = ((skel_true * prob).sum() + smooth) / (skel_true.sum() + smooth)
    return 1.0 - 2.0 * tprec * tsens / (tprec + tsens)


@_registered("cldice")
class ClDiceTerm(LossModule):
    """Soft clDice loss (binary heads): rewards connected thin structures; usually added to bce + dice."""

    name = "cldice"

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """``logits (N, 1, *spatial)``, ``target`` and optional ``weight (N, 1, *spatial)`` → scalar."""
        o = self.options
        return soft_cldice_loss(logits, target, weight=weight, iterations=o["iterations"], smooth=o["smooth"])
