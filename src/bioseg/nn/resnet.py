"""The ResNet-18/34 encoder of :class:`~bioseg.nn.resunet.ResUNet`, in torchvision's module layout.

The modules and parameter names (``conv1, bn1, relu, maxpool, layer1..layer4`` of basic blocks with
``conv1/bn1/conv2/bn2/downsample.0/.1``) repeat torchvision's ResNet, so a torchvision or timm
``resnet18``/``resnet34`` state dict loads key for key (:mod:`bioseg.nn.resnet_weights`).
"""

from __future__ import annotations

import torch
from torch import nn

from bioseg.errors import BiosegError
from bioseg.nn.blocks import norm_layer

#: depth → basic blocks per stage (torchvision's resnet18 / resnet34)
RESNET_LAYERS: dict[int, tuple[int, ...]] = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
#: output channels of layer1..layer4
RESNET_WIDTHS = (64, 128, 256, 512)


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
