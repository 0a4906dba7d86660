"""ResUNet: a 2D UNet whose encoder is a ResNet-18/34, loadable from ImageNet-style ResNet weights.

The encoder repeats torchvision's ResNet module layout and parameter names (``conv1, bn1, relu, maxpool,
layer1..layer4`` of basic blocks with ``conv1/bn1/conv2/bn2/downsample.0/.1``), so the state dict of a
torchvision or timm ``resnet18``/``resnet34`` loads into ``ResUNet.encoder`` key for key. The only
mapping needed is to drop the classifier (``fc.weight``, ``fc.bias``); a common prefix (``encoder.``,
``backbone.``, …) is found and stripped, and ``num_batches_tracked`` buffers, which older checkpoints
lack, may be absent. Weights are only ever read from a local file.

The decoder upsamples by pixel shuffle (ICNR-initialised, so no checkerboard at init) and concatenates
the encoder features at strides 16, 8, 4 and 2 on the way back to full resolution; one 1×1 conv per head
gives ``dict[str, Tensor]`` like :class:`bioseg.nn.unet.UNet`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bioseg.errors import BiosegError
from bioseg.nn.blocks import NORMS, ConvBlock, Up, check_choice, check_spatial_dims, init_conv_, norm_layer
from bioseg.nn.factory import MODELS
from bioseg.nn.transfer import read_state
from bioseg.nn.unet import UNet, check_heads

#: depth → basic blocks per stage (torchvision's resnet18 / resnet34)
RESNET_LAYERS: dict[int, tuple[int, ...]] = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
#: output channels of layer1..layer4
RESNET_WIDTHS = (64, 128, 256, 512)
#: decoder features at strides 1, 2, 4, 8, 16 (finest first, like UNet's ``widths``)
DEFAULT_DECODER_WIDTHS = (16, 32, 64, 128, 256)
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")

_STEM = "conv1.weight"


# ----------------------------------------------------------------------------------------------------------
# Encoder


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block: two 3×3 convs with a (projected) identity shortcut.

    ``(N, in_channels, H, W)`` → ``(N, channels, H / stride, W / stride)``.
    """

    conv_norm_pairs = (("conv1", "bn1"), ("conv2", "bn2"))  # folded by the predictor

    def __init__(self, in_channels: int, channels: int, stride: int = 1, norm: str = "batch") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm_layer(norm, 2, channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = norm_layer(norm, 2, channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False), norm_layer(norm, 2, channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + identity)


class ResNetEncoder(nn.Module):
    """A ResNet-18/34 without its classifier, in torchvision's layout and parameter names.

    ``forward``: ``(N, in_channels, H, W)`` → five feature maps at strides 2, 4, 8, 16, 32 with
    :attr:`channels` = (64, 64, 128, 256, 512): the stem after ReLU (before max-pooling), then
    layer1..layer4.
    """

    conv_norm_pairs = (("conv1", "bn1"),)  # folded by the predictor

    def __init__(self, in_channels: int = 3, depth: int = 18, norm: str = "batch") -> None:
        super().__init__()
        if depth not in RESNET_LAYERS:
            raise BiosegError(
                f"ResNet depth is {depth!r}; resunet supports {', '.join(map(str, RESNET_LAYERS))} "
                "(basic-block ResNets)"
            )
        self.depth = depth
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(norm, 2, 64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        previous = 64
        for stage, (blocks, width) in enumerate(zip(RESNET_LAYERS[depth], RESNET_WIDTHS, strict=True)):
            stride = 1 if stage == 0 else 2
            layer = [BasicBlock(previous, width, stride, norm)]
            layer += [BasicBlock(width, width, 1, norm) for _ in range(blocks - 1)]
            self.add_module(f"layer{stage + 1}", nn.Sequential(*layer))
            previous = width
        self.channels: tuple[int, ...] = (64, *RESNET_WIDTHS)
        # torchvision's initialisation, so a randomly initialised encoder trains like theirs.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(N, C, H, W)`` → ``[(N, 64, H/2, W/2), (N, 64, H/4, W/4), …, (N, 512, H/32, W/32)]``."""
        stem = self.relu(self.bn1(self.conv1(x)))
        features = [stem]
        y = self.maxpool(stem)
        for name in ("layer1", "layer2", "layer3", "layer4"):
            y = getattr(self, name)(y)
            features.append(y)
        return features


# ----------------------------------------------------------------------------------------------------------
# Loading encoder weights


@dataclass
class EncoderLoadReport:
    """What :func:`load_encoder_state` did with each tensor.

    ``loaded``: encoder keys copied unchanged. ``adapted``: the stem conv converted to another number of
    input channels (``input_channels`` = (file, model)). ``kept``: encoder keys the file lacks that may
    be absent (``num_batches_tracked``); they keep their initial value. ``ignored``: file key → why it
    was not used (the classifier ``fc.*``, tensors outside the encoder, norm statistics the chosen
    ``norm`` has no place for). ``prefix``: the prefix stripped from the file's keys.
    """

    source: str = ""
    prefix: str = ""
    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    ignored: dict[str, str] = field(default_factory=dict)
    input_channels: tuple[int, int] | None = None

    def summary(self) -> str:
        """One line, e.g. ``encoder weights from r18.pth: loaded 101 tensors, adapted conv1.weight (3 → 1
        input channels), ignored 2 (fc.bias, fc.weight)``."""
        parts = [f"loaded {len(self.loaded)} tensors"]
        if self.input_channels:
            src, dst = self.input_channels
            parts.append(f"adapted {', '.join(self.adapted)} ({src} → {dst} input channels)")
        if self.kept:
            parts.append(f"kept {len(self.kept)} at initialisation (num_batches_tracked)")
        if self.ignored:
            names = sorted(self.ignored)
            listed = ", ".join(names[:4]) + (f", … ({len(names) - 4} more)" if len(names) > 4 else "")
            parts.append(f"ignored {len(names)} ({listed})")
        where = f" from {self.source}" if self.source else ""
        prefix = f" (prefix '{self.prefix}' stripped)" if self.prefix else ""
        return f"encoder weights{where}{prefix}: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the report, its summary line included."""
        d = asdict(self)
        d["input_channels"] = list(self.input_channels) if self.input_channels else None
        d["summary"] = self.summary()
        return d


def read_encoder_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a local ResNet weight file: a state dict saved with ``torch.save`` (``.pth``, ``.pt``,
    ``.bin``; read with ``weights_only=True``, a ``state_dict``/``model_state_dict`` entry unwrapped) or a
    ``.safetensors`` file. Nothing is ever downloaded; a missing file is a BiosegError."""
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise BiosegError(
            f"encoder_weights {path} {what}; give a local ResNet weight file ({', '.join(WEIGHT_SUFFIXES)}), "
            "e.g. a torchvision or timm resnet18 state dict saved with torch.save(model.state_dict(), path); "
            "weights are never downloaded"
        )
    return read_state(path)


def find_encoder_prefix(state: Mapping[str, torch.Tensor]) -> str:
    """The prefix in front of the ResNet keys of ``state``: ``""`` for a torchvision/timm file,
    ``"encoder."`` for a ResUNet state dict, ``"backbone."`` etc. for others. BiosegError if no key
    ``<prefix>conv1.weight`` with a matching ``<prefix>layer1.0.conv1.weight`` exists."""
    candidates = [
        key[: -len(_STEM)] for key in state
        if key.endswith(_STEM) and (key == _STEM or key[: -len(_STEM)].endswith("."))
        and f"{key[: -len(_STEM)]}layer1.0.conv1.weight" in state
    ]
    if not candidates:
        sample = ", ".join(sorted(state)[:6])
        raise BiosegError(
            f"the weight file holds no ResNet (no 'conv1.weight' with 'layer1.0.conv1.weight' beside it; "
            f"found keys {sample}, …); give a torchvision- or timm-style resnet18/resnet34 state dict"
        )
    return min(candidates, key=len)


def adapt_stem_weight(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """The stem conv weight ``(O, S, kH, kW)`` for ``channels`` input channels: the mean of the S filters,
    repeated for every new channel and scaled by ``S / channels``.

    The filters then sum to those of the file, so an image whose channels all equal one grey image x
    gives exactly the activations the original network gives for x repeated over its S (RGB) channels.
    Unlike :func:`bioseg.nn.transfer.adapt_input_channels` no channel keeps the red filter: the channels
    of a microscope image have nothing to do with R, G, B.
    """
    if weight.dim() != 4:
        raise BiosegError(f"expected a 2D conv weight (O, C, kH, kW); got shape {tuple(weight.shape)}")
    w = weight.float()
    out = w.mean(dim=1, keepdim=True).expand(-1, channels, -1, -1) * (w.shape[1] / channels)
    return out.to(weight.dtype).contiguous()


def _wrong_resnet_hint(source: Mapping[str, torch.Tensor], depth: int) -> str:
    if "layer1.0.conv3.weight" in source:
        return "the file holds a bottleneck ResNet (ResNet-50 or deeper), which resunet does not support"
    file_depth = None
    if "layer1.1.conv1.weight" in source:
        file_depth = 34 if "layer3.5.conv1.weight" in source else 18
    if file_depth and file_depth != depth:
        return f"the file holds a ResNet-{file_depth}: set depth: {file_depth}"
    return "the file holds another architecture"


def load_encoder_state(
    encoder: ResNetEncoder, state: Mapping[str, torch.Tensor], source: str = ""
) -> EncoderLoadReport:
    """Load a torchvision/timm-style ResNet state dict into ``encoder`` (in place).

    Every encoder tensor must be in ``state`` with its shape; the exceptions are the stem conv
    ``conv1.weight`` with another number of input channels, which is adapted
    (:func:`adapt_stem_weight`), and ``num_batches_tracked``, which may be absent. Anything else missing
    or of another shape (another depth, a bottleneck ResNet) is a BiosegError: a half-loaded encoder
    would silently train from a broken start. Keys the encoder lacks (``fc.*``) are reported as ignored.
    """
    prefix = find_encoder_prefix(state)
    report = EncoderLoadReport(source=source, prefix=prefix)
    source_state = {}
    for key, value in state.items():
        if key.startswith(prefix):
            source_state[key[len(prefix):]] = value
        else:
            report.ignored[key] = "outside the encoder"
    target = encoder.state_dict()
    merged = dict(target)
    problems: list[str] = []
    for key, t in target.items():
        s = source_state.get(key)
        if s is None:
            if key.endswith("num_batches_tracked"):
                report.kept.append(key)
            else:
                problems.append(f"{key} missing")
        elif s.shape == t.shape:
            merged[key] = s.detach().to(dtype=t.dtype, device=t.device)
            report.loaded.append(key)
        elif key == _STEM and s.dim() == 4 and s.shape[0] == t.shape[0] and s.shape[2:] == t.shape[2:]:
            merged[key] = adapt_stem_weight(s.detach(), int(t.shape[1])).to(dtype=t.dtype, device=t.device)
            report.adapted.append(key)
            report.input_channels = (int(s.shape[1]), int(t.shape[1]))
        else:
            problems.append(f"{key} has shape {tuple(s.shape)}, expected {tuple(t.shape)}")
    if problems:
        listed = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
        raise BiosegError(
            f"encoder weights {source or ''} do not fit a ResNet-{encoder.depth} encoder ({listed}); "
            f"{_wrong_resnet_hint(source_state, encoder.depth)}"
        )
    for key in source_state:
        if key not in target:
            report.ignored[prefix + key] = (
                "classifier (not used for segmentation)" if key.startswith("fc.")
                else "not in the encoder (e.g. norm statistics the chosen norm does not keep)"
            )
    encoder.load_state_dict(merged, strict=True)
    return report


# ----------------------------------------------------------------------------------------------------------
# The network


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
        check_spatial_dims(spatial_dims)
        if spatial_dims != 2:
            raise BiosegError(
                f"model 'resunet' is 2D only (its encoder is a 2D ResNet) but spatial_dims is "
                f"{spatial_dims}; use model.name: unet for volumes"
            )
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise BiosegError(f"in_channels is {in_channels!r}; it must be an integer ≥ 1")
        if isinstance(depth, bool) or depth not in RESNET_LAYERS:
            raise BiosegError(
                f"depth is {depth!r}; resunet supports depth 18 (ResNet-18) or 34 (ResNet-34)"
            )
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
            if level > 0:
                y = torch.cat([features[level - 1], y], dim=1)
            y = self.decoders[level](y)
        return {name: conv(y) for name, conv in self.head_convs.items()}


MODELS.register("resunet")(ResUNet)
