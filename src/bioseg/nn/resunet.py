"""ResUNet: a 2D UNet whose encoder is a ResNet-18/34, loadable from ImageNet-style ResNet weights.

The encoder repeats torchvision's ResNet module layout and parameter names (``conv1, bn1, relu, maxpool,
layer1..layer4`` of basic blocks with ``conv1/bn1/conv2/bn2/downsample.0/.1``), so the state dict of a
torchvision or timm ``resnet18``/``resnet34`` loads into ``ResUNet.encoder`` key for key. The only
mapping needed is to drop the classifier (``fc.weight``, ``fc.bias``); a common prefix (``encoder.``,
``backbone.``, …) is found and stripped, and ``num_batches_tracked`` buffers, which older checkpoints
lack, may be absent. Weights are only ever read from a local file. The encoder is in
:mod:`bioseg.nn.resnet`, the weight loading in :mod:`bioseg.nn.resnet_weights`.

The decoder upsamples by pixel shuffle (ICNR-initialised, so no checkerboard at init) and concatenates
the encoder features at strides 16, 8, 4 and 2 on the way back to full resolution; one 1×1 conv per head
gives ``dict[str, Tensor]`` like :class:`bioseg.nn.unet.UNet`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from bioseg.errors import BiosegError
from bioseg.nn.blocks import NORMS, ConvBlock, Up, check_choice, check_spatial_dims, init_conv_
from bioseg.nn.factory import MODELS
from bioseg.nn.resnet import RESNET_LAYERS, RESNET_WIDTHS, BasicBlock, ResNetEncoder
from bioseg.nn.resnet_weights import (
    WEIGHT_SUFFIXES,
    EncoderLoadReport,
    adapt_stem_weight,
    find_encoder_prefix,
    load_encoder_state,
    read_encoder_weights,
)
from bioseg.nn.unet import UNet, check_heads

# The encoder and its weight loading live in their own modules; their public names stay importable here.
__all__ = [
    "DEFAULT_DECODER_WIDTHS",
    "RESNET_LAYERS",
    "RESNET_WIDTHS",
    "WEIGHT_SUFFIXES",
    "BasicBlock",
    "EncoderLoadReport",
    "ResNetEncoder",
    "ResUNet",
    "adapt_stem_weight",
    "find_encoder_prefix",
    "load_encoder_state",
    "read_encoder_weights",
]

#: decoder features at strides 1, 2, 4, 8, 16 (finest first, like UNet's ``widths``)
DEFAULT_DECODER_WIDTHS = (16, 32, 64, 128, 256)


def _check_resunet_args(
    spatial_dims: int,
    in_channels: int,
    depth: int,
    decoder_widths: Sequence[int] | None,
    norm: str,
    dropout: float,
) -> tuple[int, ...]:
    """Validate the :class:`ResUNet` arguments before any layer is built; returns the decoder widths."""
    check_spatial_dims(spatial_dims)
    if spatial_dims != 2:
        raise BiosegError(
            f"model 'resunet' is 2D only (its encoder is a 2D ResNet) but spatial_dims is "
            f"{spatial_dims}; use model.name: unet for volumes"
        )
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise BiosegError(f"in_channels is {in_channels!r}; it must be an integer ≥ 1")
    if isinstance(depth, bool) or depth not in RESNET_LAYERS:
        raise BiosegError(f"depth is {depth!r}; resunet supports depth 18 (ResNet-18) or 34 (ResNet-34)")
    widths = tuple(DEFAULT_DECODER_WIDTHS if decoder_widths is None else decoder_widths)
    if len(widths) != len(DEFAULT_DECODER_WIDTHS) or not all(
        isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths
    ):
        raise BiosegError(
            f"decoder_widths {decoder_widths!r} must be 5 positive ints, the decoder features at "
            f"strides 1, 2, 4, 8, 16 (finest first), e.g. {list(DEFAULT_DECODER_WIDTHS)}"
        )
    check_choice("norm", norm, NORMS)
    if not 0.0 <= dropout < 1.0:
        raise BiosegError(f"dropout is {dropout}; it must be in [0, 1)")
    return widths


class ResUNet(nn.Module):
    """UNet with a ResNet-18/34 encoder (2D only) and one 1×1 conv head per named output.

    Input ``(N, in_channels, H, W)`` with H and W multiples of 32 (:attr:`size_divisor`); output
    ``{head: (N, heads[head], H, W)}`` (raw logits), always a dict.

    Args:
        spatial_dims: must be 2 (the encoder is a 2D ResNet); use ``unet`` for volumes.
        in_channels: channels of the input image; with ``encoder_weights`` and ``in_channels != 3`` the
            stem conv is adapted (:func:`adapt_stem_weight`).
        heads: head name → output channels.
        depth: 18 or 34 (ResNet-18 / ResNet-34).
        decoder_widths: decoder features at strides 1, 2, 4, 8, 16 (finest first, 5 ints);
            default (16, 32, 64, 128, 256).
        encoder_weights: local ``.pth``/``.pt``/``.safetensors`` file of a torchvision- or timm-style
            ResNet of the same depth (``fc.*`` is ignored); None: random initialisation.
            What was loaded is in :attr:`load_report`.
        norm: ``batch`` | ``instance`` | ``group`` | ``none``, in encoder and decoder. Pretrained
            weights expect ``batch``: other norms keep the affine parameters but drop the statistics.
        dropout: dropout probability inside each decoder block (training only).
    """

    check_input = UNet.check_input  # same shape, channel and size_divisor checks as the UNet

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        heads: Mapping[str, int],
        depth: int = 18,
        decoder_widths: Sequence[int] | None = None,
        encoder_weights: str | Path | None = None,
        norm: str = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        widths = _check_resunet_args(spatial_dims, in_channels, depth, decoder_widths, norm, dropout)
        self.spatial_dims = 2
        self.in_channels = in_channels
        self.heads = check_heads(heads)
        self.depth = depth
        self.decoder_widths = widths
        self.size_divisor: tuple[int, ...] = (32, 32)

        # The encoder is registered first, so its stem is the model's first conv (what fine-tuning from a
        # run with another channel count adapts).
        self.encoder = ResNetEncoder(in_channels, depth, norm)
        # Decoder level i works at stride 2**i; it receives the encoder features at the same stride
        # (none at full resolution) and the upsampled level i + 1 (level 5 = layer4's output).
        skips = (0, *self.encoder.channels[:-1])
        below = (*widths[1:], self.encoder.channels[-1])
        self.ups = nn.ModuleList(
            Up(2, below[i], widths[i], (2, 2), mode="pixelshuffle", activation="relu") for i in range(5)
        )
        self.decoders = nn.ModuleList(
            ConvBlock(2, widths[i] + skips[i], widths[i], norm=norm, activation="relu", dropout=dropout)
            for i in range(5)
        )
        self.head_convs = nn.ModuleDict(
            {name: nn.Conv2d(widths[0], channels, 1) for name, channels in self.heads.items()}
        )
        for part in (self.decoders, self.head_convs):
            part.apply(lambda m: init_conv_(m, "relu"))

        self.load_report: EncoderLoadReport | None = None
        if encoder_weights is not None:
            self.load_encoder_weights(encoder_weights)

    def load_encoder_weights(self, path: str | Path) -> EncoderLoadReport:
        """Load a local ResNet weight file into the encoder (see :func:`load_encoder_state`); the report
        is returned and kept as :attr:`load_report`."""
        self.load_report = load_encoder_state(self.encoder, read_encoder_weights(path), source=str(path))
        return self.load_report

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """The encoder's parameters (e.g. to freeze them or give them their own learning rate)."""
        return self.encoder.parameters()

    def freeze_encoder(self, flag: bool = True) -> None:
        """Stop (``flag=True``) or restore gradients to the encoder. Norm layers still update their running
        statistics in train mode, so the encoder keeps adapting its normalisation to the new images."""
        for p in self.encoder_parameters():
            p.requires_grad_(not flag)

    @property
    def encoder_frozen(self) -> bool:
        """True when no encoder parameter receives gradients."""
        return not any(p.requires_grad for p in self.encoder_parameters())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(N, in_channels, H, W)`` → ``{head: (N, heads[head], H, W)}``."""
        self.check_input(x)
        features = self.encoder(x)
        y = features[-1]
        for level in range(4, -1, -1):
            y = self.ups[level](y)
            y = self.decoders[level].forward_concat(features[level - 1], y) if level > 0 else self.decoders[level](y)
        return {name: conv(y) for name, conv in self.head_convs.items()}


MODELS.register("resunet")(ResUNet)
