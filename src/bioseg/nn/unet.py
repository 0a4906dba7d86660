"""A UNet for 2D and 3D with named output heads."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from bioseg.errors import BiosegError
from bioseg.nn.blocks import (
    ACTIVATIONS,
    DOWNSAMPLES,
    NORMS,
    UPSAMPLES,
    ConvBlock,
    Down,
    Up,
    check_choice,
    check_spatial_dims,
    conv_nd,
    init_conv_,
)

_RESERVED = nn.ModuleDict()  # head names become its keys, so they must not shadow its attributes


def check_heads(heads: Mapping[str, int]) -> dict[str, int]:
    """``heads`` as a plain dict after checking names and channel counts."""
    if not isinstance(heads, Mapping) or not heads:
        raise BiosegError(
            "heads must be a non-empty mapping of head name → output channels, e.g. {'mask': 1}; "
            f"got {heads!r}"
        )
    out: dict[str, int] = {}
    for name, channels in heads.items():
        if not isinstance(name, str) or not name or "." in name or hasattr(_RESERVED, name):
            raise BiosegError(
                f"head name {name!r} is not usable: use a non-empty string without '.' that is not a "
                f"method name of torch.nn.ModuleDict (e.g. 'mask', 'boundaries')"
            )
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise BiosegError(f"head '{name}' has {channels!r} output channels; it needs an integer ≥ 1")
        out[name] = int(channels)
    return out


def resolve_pool_sizes(
    pool_sizes: Sequence[int | Sequence[int]] | None, levels: int, spatial_dims: int
) -> list[tuple[int, ...]]:
    """Per-level downsampling factors, one tuple of ``spatial_dims`` ints per level (``levels`` =
    number of widths - 1). ``None`` → 2 on every axis; an int at a level → that factor on every axis."""
    if pool_sizes is None:
        return [(2,) * spatial_dims for _ in range(levels)]
    if isinstance(pool_sizes, (int, str)) or len(pool_sizes) != levels:
        example = [[1] + [2] * (spatial_dims - 1)] + [[2] * spatial_dims] * (levels - 1)
        raise BiosegError(
            f"pool_sizes {pool_sizes!r} must list one entry per downsampling level: {levels} for "
            f"{levels + 1} widths, e.g. {example[:levels]}"
        )
    out = []
    for level, entry in enumerate(pool_sizes):
        factors = (entry,) * spatial_dims if isinstance(entry, int) else tuple(entry)
        if len(factors) != spatial_dims or not all(
            isinstance(f, int) and not isinstance(f, bool) and f >= 1 for f in factors
        ):
            raise BiosegError(
                f"pool_sizes[{level}] is {entry!r}; it must be a positive int or {spatial_dims} positive ints"
            )
        out.append(tuple(factors))
    return out


class UNet(nn.Module):
    """UNet with one 1×1 conv head per named output.

    Input ``(N, in_channels, *spatial)`` with every spatial size a multiple of ``size_divisor``;
    output ``{head: (N, heads[head], *spatial)}`` (raw logits), always a dict.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the input image.
        heads: head name → output channels.
        widths: features per level, finest first; ``len(widths) - 1`` downsamplings.
        norm: ``batch`` | ``instance`` | ``group`` (≤ 8 groups that divide the channels) | ``none``.
        residual: add a (1×1-projected) skip around each conv pair.
        upsample: ``transpose`` | ``interp`` (linear + conv) | ``pixelshuffle`` (ICNR-initialised).
        dropout: dropout probability inside each conv block (training only).
        pool_sizes: per-level factors, e.g. ``[[1, 2, 2], [1, 2, 2], [2, 2, 2]]`` for anisotropic 3D
            (no z-pooling at the first levels); default 2 on every axis.
        downsample: ``maxpool`` | ``conv`` (strided convolution).
        activation: ``leakyrelu`` | ``relu``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        heads: Mapping[str, int],
        widths: Sequence[int] = (16, 32, 64, 128),
        norm: str = "batch",
        residual: bool = False,
        upsample: str = "transpose",
        dropout: float = 0.0,
        pool_sizes: Sequence[int | Sequence[int]] | None = None,
        downsample: str = "maxpool",
        activation: str = "leakyrelu",
    ) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise BiosegError(f"in_channels is {in_channels!r}; it must be an integer ≥ 1")
        widths = list(widths) if not isinstance(widths, int) else [widths]
        if not widths or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths):
            raise BiosegError(f"widths {widths!r} must be a non-empty list of positive ints, e.g. [16, 32, 64]")
        check_choice("norm", norm, NORMS)
        check_choice("upsample", upsample, UPSAMPLES)
        check_choice("downsample", downsample, DOWNSAMPLES)
        check_choice("activation", activation, ACTIVATIONS)
        if not 0.0 <= dropout < 1.0:
            raise BiosegError(f"dropout is {dropout}; it must be in [0, 1)")
        self.in_channels = in_channels
        self.heads = check_heads(heads)
        self.widths = tuple(widths)
        self.pool_sizes = resolve_pool_sizes(pool_sizes, len(widths) - 1, spatial_dims)
        self.size_divisor: tuple[int, ...] = tuple(
            math.prod(p[axis] for p in self.pool_sizes) for axis in range(spatial_dims)
        )

        block = dict(norm=norm, activation=activation, residual=residual, dropout=dropout)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        for level, width in enumerate(widths):
            if level > 0:
                factors = self.pool_sizes[level - 1]
                self.downs.append(Down(spatial_dims, widths[level - 1], factors, downsample))
            self.encoders.append(
                ConvBlock(spatial_dims, in_channels if level == 0 else widths[level - 1], width, **block)
            )
        # Decoder modules are indexed by the level they produce (0 = finest).
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in range(len(widths) - 1):
            factors = self.pool_sizes[level]
            self.ups.append(Up(spatial_dims, widths[level + 1], widths[level], factors, upsample, activation))
            self.decoders.append(ConvBlock(spatial_dims, 2 * widths[level], widths[level], **block))
        self.head_convs = nn.ModuleDict(
            {name: conv_nd(spatial_dims, widths[0], channels, 1) for name, channels in self.heads.items()}
        )

        self.apply(lambda m: init_conv_(m, activation))
        for up in self.ups:  # the generic init above overwrote their own (ICNR) init
            up.reset_parameters()

    def check_input(self, x: torch.Tensor) -> None:
        """BiosegError unless ``x`` is ``(N, in_channels, *spatial)`` with sizes divisible by size_divisor."""
        if x.dim() != self.spatial_dims + 2:
            raise BiosegError(
                f"input has shape {tuple(x.shape)}; a {self.spatial_dims}D model expects "
                f"(N, {self.in_channels}, {', '.join('ZYX'[3 - self.spatial_dims:])})"
            )
        if x.shape[1] != self.in_channels:
            raise BiosegError(
                f"input has {x.shape[1]} channels (shape {tuple(x.shape)}); "
                f"the model expects {self.in_channels}"
            )
        spatial = tuple(x.shape[2:])
        if any(s % d for s, d in zip(spatial, self.size_divisor, strict=True)):
            raise BiosegError(
                f"input spatial size {spatial} is not a multiple of the model's size_divisor "
                f"{self.size_divisor}; pad the input up to a multiple (the predictor pads automatically) "
                f"or choose a patch size that is one"
            )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(N, in_channels, *spatial)`` → ``{head: (N, heads[head], *spatial)}``."""
        self.check_input(x)
        skips = []
        for level, encoder in enumerate(self.encoders):
            if level > 0:
                x = self.downs[level - 1](x)
            x = encoder(x)
            skips.append(x)
        for level in range(len(self.decoders) - 1, -1, -1):
            x = self.ups[level](x)
            x = self.decoders[level].forward_concat(skips[level], x)
        return {name: conv(x) for name, conv in self.head_convs.items()}
