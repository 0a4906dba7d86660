"""Dimension-agnostic building blocks: convolutions, norms, conv blocks, down- and upsampling.

Every block takes ``spatial_dims`` (2 or 3) and picks the matching torch layer, so one class serves
2D and 3D. Tensors are ``(N, C, *spatial)`` throughout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bioseg.errors import BiosegError
from bioseg.registry import did_you_mean

NORMS = ("batch", "instance", "group", "none")
UPSAMPLES = ("transpose", "interp", "pixelshuffle")
DOWNSAMPLES = ("maxpool", "conv")
ACTIVATIONS = ("leakyrelu", "relu")

LEAKY_SLOPE = 0.01

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_MAXPOOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
_BATCHNORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_INSTANCENORM = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}


def check_choice(kind: str, value: str, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else BiosegError with the valid names and a suggestion."""
    if value not in choices:
        raise BiosegError(
            f"unknown {kind} '{value}'; valid: {', '.join(choices)}."
            + did_you_mean(str(value), tuple(choices))
        )
    return value


def check_spatial_dims(spatial_dims: int) -> int:
    if spatial_dims not in (2, 3):
        raise BiosegError(f"spatial_dims is {spatial_dims!r}; it must be 2 (images) or 3 (volumes)")
    return spatial_dims


def conv_nd(
    spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int | Sequence[int] = 3,
    stride: int | Sequence[int] = 1, bias: bool = True,
) -> nn.Module:
    """A Conv2d/Conv3d with 'same' padding for odd kernels."""
    k = _as_tuple(kernel_size, spatial_dims)
    return _CONV[spatial_dims](
        in_channels, out_channels, k, stride=stride, padding=tuple(s // 2 for s in k), bias=bias
    )


def group_count(channels: int, max_groups: int = 8) -> int:
    """Groups for GroupNorm: ``min(max_groups, channels)`` if it divides ``channels``, else the largest
    divisor of ``channels`` below it (12 channels → 6 groups, 9 → 3, a prime like 11 → 1)."""
    for groups in range(min(max_groups, channels), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


def norm_layer(norm: str, spatial_dims: int, channels: int) -> nn.Module:
    """The normalisation layer named ``norm`` for ``channels`` features; ``none`` → Identity."""
    check_choice("norm", norm, NORMS)
    if norm == "batch":
        return _BATCHNORM[spatial_dims](channels)
    if norm == "instance":
        return _INSTANCENORM[spatial_dims](channels, affine=True)
    if norm == "group":
        return nn.GroupNorm(group_count(channels), channels)
    return nn.Identity()


def activation_layer(activation: str) -> nn.Module:
    check_choice("activation", activation, ACTIVATIONS)
    if activation == "relu":
        return nn.ReLU(inplace=True)
    return nn.LeakyReLU(LEAKY_SLOPE, inplace=True)


def init_conv_(module: nn.Module, activation: str = "leakyrelu") -> None:
    """He-normal weights and zero bias for every (transposed) convolution, to suit (leaky) ReLU."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        slope = LEAKY_SLOPE if activation == "leakyrelu" else 0.0
        nn.init.kaiming_normal_(module.weight, a=slope, nonlinearity="leaky_relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class ConvBlock(nn.Module):
    """Two 3×3(×3) convolutions, each followed by norm and activation.

    ``residual=True`` adds the input back before the last activation, through a 1×1 projection when the
    channel count changes. ``dropout`` acts between the two convolutions (training only).
    ``(N, in_channels, *spatial)`` → ``(N, out_channels, *spatial)``.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, norm: str = "batch",
        activation: str = "leakyrelu", residual: bool = False, dropout: float = 0.0,
    ) -> None:
        super().__init__()
        bias = norm == "none"  # a bias right before a norm layer is cancelled by it
        self.conv1 = conv_nd(spatial_dims, in_channels, out_channels, 3, bias=bias)
        self.norm1 = norm_layer(norm, spatial_dims, out_channels)
        self.act1 = activation_layer(activation)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = conv_nd(spatial_dims, out_channels, out_channels, 3, bias=bias)
        self.norm2 = norm_layer(norm, spatial_dims, out_channels)
        self.act2 = activation_layer(activation)
        self.skip: nn.Module | None = None
        if residual:
            self.skip = (
                nn.Identity() if in_channels == out_channels
                else conv_nd(spatial_dims, in_channels, out_channels, 1, bias=True)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop(self.act1(self.norm1(self.conv1(x))))
        y = self.norm2(self.conv2(y))
        if self.skip is not None:
            y = y + self.skip(x)
        return self.act2(y)

    def forward_concat(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The block on the channel concatenation of ``a`` and ``b`` (a skip connection and upsampled
        features); the fused inference form (bioseg.inference.fast_net) builds no concatenation."""
        return self(torch.cat([a, b], dim=1))


class Down(nn.Module):
    """Downsampling by ``factors`` per axis: max-pooling, or a strided convolution (``mode='conv'``,
    kernel = stride = factors, channels kept). ``(N, C, *spatial)`` → ``(N, C, *spatial / factors)``."""

    def __init__(
        self, spatial_dims: int, channels: int, factors: Sequence[int], mode: str = "maxpool"
    ) -> None:
        super().__init__()
        check_choice("downsample", mode, DOWNSAMPLES)
        f = tuple(factors)
        if mode == "maxpool":
            self.op: nn.Module = _MAXPOOL[spatial_dims](f, stride=f)
        else:
            self.op = _CONV[spatial_dims](channels, channels, f, stride=f, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


def voxel_shuffle(x: torch.Tensor, factors: Sequence[int]) -> torch.Tensor:
    """Sub-pixel shuffle for any number of spatial axes and per-axis factors.

    ``(N, C·∏factors, *spatial)`` → ``(N, C, *(spatial·factors))``. Channel ``c·R + flat(i, j, …)``
    (R = ∏factors, sub-pixel offsets in C order) lands at output channel ``c``, offset ``(i, j, …)``:
    the same ordering as ``torch.nn.functional.pixel_shuffle`` in 2D. Keeps a channels_last input
    channels_last.
    """
    f = tuple(int(v) for v in factors)
    d = len(f)
    n, c_in, *spatial = x.shape
    if len(spatial) != d:
        raise BiosegError(f"voxel_shuffle got {len(spatial)} spatial axes but {d} factors {f}")
    r = math.prod(f)
    if c_in % r:
        raise BiosegError(f"voxel_shuffle needs channels divisible by {r} (factors {f}); got {c_in}")
    c = c_in // r
    y = x.reshape(n, c, *f, *spatial)
    # (N, C, f1..fd, s1..sd) → (N, C, s1, f1, s2, f2, …): each spatial axis followed by its factor.
    order = [0, 1] + [p for i in range(d) for p in (2 + d + i, 2 + i)]
    y = y.permute(*order).reshape(n, c, *(s * k for s, k in zip(spatial, f, strict=True)))
    if d == 2 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        y = y.contiguous(memory_format=torch.channels_last)
    elif d == 3 and x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous():
        y = y.contiguous(memory_format=torch.channels_last_3d)
    return y


def icnr_(conv: nn.Module, factors: Sequence[int], activation: str = "leakyrelu") -> None:
    """ICNR init: the conv before a ``voxel_shuffle(·, factors)`` gets identical kernels for all
    sub-pixels of an output channel, so right after init the shuffle equals nearest-neighbour upsampling
    of a He-initialised conv (no checkerboard)."""
    r = math.prod(factors)
    out_channels, in_channels, *k = conv.weight.shape
    sub = torch.empty(out_channels // r, in_channels, *k)
    slope = LEAKY_SLOPE if activation == "leakyrelu" else 0.0
    nn.init.kaiming_normal_(sub, a=slope, nonlinearity="leaky_relu")
    with torch.no_grad():
        conv.weight.copy_(sub.repeat_interleave(r, dim=0))
        if conv.bias is not None:
            conv.bias.zero_()


class Up(nn.Module):
    """Upsampling by ``factors`` per axis with a channel change ``in_channels → out_channels``.

    ``transpose``: transposed conv with kernel = stride = factors. ``interp``: 1×1 conv, then
    (bi/tri)linear interpolation — a 1×1 conv commutes with linear interpolation, so running it at the
    low resolution is exact and cheaper. ``pixelshuffle``: 3×3 conv to ``out·∏factors`` channels, then
    :func:`voxel_shuffle`, ICNR-initialised. ``(N, in, *spatial)`` → ``(N, out, *(spatial·factors))``.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, factors: Sequence[int],
        mode: str = "transpose", activation: str = "leakyrelu",
    ) -> None:
        super().__init__()
        check_choice("upsample", mode, UPSAMPLES)
        self.mode = mode
        self.factors = tuple(int(f) for f in factors)
        self.activation = activation
        if mode == "transpose":
            self.conv: nn.Module = _CONV_T[spatial_dims](
                in_channels, out_channels, self.factors, stride=self.factors
            )
        elif mode == "interp":
            self.conv = conv_nd(spatial_dims, in_channels, out_channels, 1)
        else:
            self.conv = conv_nd(spatial_dims, in_channels, out_channels * math.prod(self.factors), 3)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.mode == "pixelshuffle":
            icnr_(self.conv, self.factors, self.activation)
        else:
            init_conv_(self.conv, self.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "transpose":
            return self.conv(x)
        if self.mode == "pixelshuffle":
            return voxel_shuffle(self.conv(x), self.factors)
        y = self.conv(x)
        size = [s * f for s, f in zip(y.shape[2:], self.factors, strict=True)]
        mode = "bilinear" if y.dim() == 4 else "trilinear"
        return F.interpolate(y, size=size, mode=mode, align_corners=False)


def _as_tuple(value: int | Sequence[int], n: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    out = tuple(int(v) for v in value)
    if len(out) != n:
        raise BiosegError(f"expected {n} values (one per spatial axis), got {list(out)}")
    return out
