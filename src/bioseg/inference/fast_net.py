"""The network that predicts the tiles: the trained network rewritten for inference, with the same outputs.

- BatchNorm folded into the convolution before it (:func:`fold_batchnorm`);
- channels-last layout (:func:`memory_format`);
- in float32 on a CPU, oneDNN fusions (:func:`fuse_onednn`): every convolution of a
  :class:`~bioseg.nn.blocks.ConvBlock` runs with its activation as a oneDNN post-op, and a decoder block
  convolves the skip connection and the upsampled features with the two halves of its first weights,
  adding the second result in place as a post-op, instead of copying both into one concatenation first;
  in a UNet, the 2 × 2 transposed convolution that upsamples is folded into that first convolution
  (:class:`FusedUpDecoder`): one transposed convolution from the coarse features, no upsampled tensor.
  The default 2D UNet, 2 threads, a 2048² image: 1.16× faster than unfused, 3.04× MONAI's
  ``sliding_window_inference`` (benchmarks/bench_fp32_paths.py; the upsampling fold alone: 1.17×).

bf16 and fp16 keep the unfused network: autocast does not reach oneDNN's fused operations, and where a
CPU computes bf16 natively the convolutions, not the copies, are what take the time.
"""

from __future__ import annotations

import copy
import itertools
import logging

import torch
import torch.nn.functional as F
from torch import nn

from bioseg.nn.blocks import ConvBlock, Up
from bioseg.nn.unet import UNet

log = logging.getLogger("bioseg")

#: (conv, norm) attribute pairs of blocks whose forward feeds the conv's output only into the norm
_CONV_NORM_PAIRS: dict[type, tuple[tuple[str, str], ...]] = {ConvBlock: (("conv1", "norm1"), ("conv2", "norm2"))}


def _foldable(conv: object, norm: object) -> bool:
    return (
        isinstance(conv, torch.nn.Conv1d | torch.nn.Conv2d | torch.nn.Conv3d)
        and isinstance(norm, torch.nn.modules.batchnorm._BatchNorm)
        and norm.track_running_stats
        and norm.running_mean is not None
    )


def fold_batchnorm(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``net`` in eval mode with BatchNorm layers folded into the convolution before them.

    In eval mode BatchNorm is a fixed per-channel affine map, so ``norm(conv(x))`` equals one convolution
    with rescaled weights and a bias: the same output (to float rounding) for one pass less over every
    feature map. Folded: a conv directly followed by a BatchNorm inside an ``nn.Sequential``, and the
    (conv, norm) attribute pairs that a block lists in ``conv_norm_pairs`` (ConvBlock's are known here)
    — pairs where the conv's output goes into the norm and nowhere else. The caller's module is untouched.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net = copy.deepcopy(net).eval()
    for module in net.modules():
        if isinstance(module, torch.nn.Sequential):
            for i in range(len(module) - 1):
                if _foldable(module[i], module[i + 1]):
                    module[i] = fuse_conv_bn_eval(module[i], module[i + 1])
                    module[i + 1] = torch.nn.Identity()
        pairs = getattr(module, "conv_norm_pairs", None) or _CONV_NORM_PAIRS.get(type(module), ())
        for conv_name, norm_name in pairs:
            conv, norm = getattr(module, conv_name), getattr(module, norm_name)
            if _foldable(conv, norm):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, norm))
                setattr(module, norm_name, torch.nn.Identity())
    return net


def memory_format(spatial_dims: int) -> torch.memory_format:
    """Channels-last layout for ``spatial_dims`` (2 or 3): what oneDNN and cuDNN convolve fastest,
    measured at about 2x the default layout for the 2D UNet on a CPU (benchmarks/bench_prediction.py)."""
    return torch.channels_last if spatial_dims == 2 else torch.channels_last_3d


def fast_network(
    net: torch.nn.Module, spatial_dims: int, device: torch.device, autocast: torch.dtype | None
) -> torch.nn.Module:
    """``net`` (untouched) as it predicts tiles fastest on ``device`` under ``autocast`` (None: float32)."""
    fast = fold_batchnorm(net).to(memory_format=memory_format(spatial_dims))
    if device.type == "cpu" and autocast is None:
        fast = fuse_onednn(fast, spatial_dims)
    return fast


def _post_op(activation: nn.Module) -> tuple[str, list[float]] | None:
    """oneDNN's name and scalars for an activation module (None: not one it fuses)."""
    if isinstance(activation, nn.ReLU):
        return "relu", []
    if isinstance(activation, nn.LeakyReLU):
        return "leaky_relu", [float(activation.negative_slope)]
    return None


class FusedConvBlock(nn.Module):
    """A BatchNorm-folded, non-residual :class:`~bioseg.nn.blocks.ConvBlock` for float32 inference on a
    CPU: each convolution with its activation fused, and :meth:`forward_concat` without the copy. For
    inference only: the block's dropout, inactive in eval mode, is left out."""

    def __init__(self, block: ConvBlock) -> None:
        super().__init__()
        self.conv1, self.conv2 = block.conv1, block.conv2
        self.act1, self.act2 = block.act1, block.act2
        self._post1, self._post2 = _post_op(block.act1), _post_op(block.act2)
        self._split: tuple[int, torch.Tensor, torch.Tensor] | None = None

    @staticmethod
    def fusable(block: nn.Module) -> bool:
        return (
            type(block) is ConvBlock
            and block.skip is None
            and all(isinstance(m, nn.Identity) for m in (block.norm1, block.norm2))
            and _post_op(block.act1) is not None
            and _post_op(block.act2) is not None
            and all(
                c.groups == 1 and c.padding_mode == "zeros" and isinstance(c.padding, tuple)
                for c in (block.conv1, block.conv2)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_act(self.conv2, self._post2, self._conv_act(self.conv1, self._post1, x))

    def forward_concat(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The block on ``cat([a, b], dim=1)``: conv1 is linear in its input channels, so it is the
        convolution of ``b`` with the last weights, to which the convolution of ``a`` with the first
        weights and the bias is added in place."""
        w_a, w_b = self._split_weights(a.shape[1])
        conv = self.conv1
        args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        y = torch.ops.mkldnn._convolution_pointwise(b, w_b, None, *args, "none", [], "")
        y = torch.ops.mkldnn._convolution_pointwise_.binary(y, a, w_a, conv.bias, *args, "add", None, None, [], None)
        # oneDNN fuses no activation after an in-place add; this one runs in place on the sum
        y = self.act1(y)
        return self._conv_act(self.conv2, self._post2, y)

    def _split_weights(self, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
        """conv1's weights for the first ``channels`` input channels and for the rest, made once."""
        if self._split is None or self._split[0] != channels:
            w = self.conv1.weight.detach()
            layout = torch.channels_last if w.ndim == 4 else torch.channels_last_3d
            self._split = (channels, w[:, :channels].contiguous(memory_format=layout),
                           w[:, channels:].contiguous(memory_format=layout))  # fmt: skip
        return self._split[1], self._split[2]

    @staticmethod
    def _conv_act(conv: nn.Module, post: tuple[str, list[float]], x: torch.Tensor) -> torch.Tensor:
        name, scalars = post
        return torch.ops.mkldnn._convolution_pointwise(
            x, conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups,
            name, scalars, "",
        )  # fmt: skip


class FusedUpDecoder(nn.Module):
    """A UNet level's upsampling (transposed convolution, kernel = stride = f) and decoder block in one.

    Its :meth:`forward_concat` takes the skip connection and the features *before* upsampling (the UNet's
    ``ups[level]`` becomes an Identity). Upsampling and the 3 × 3 convolution of the upsampled half are both
    linear, so together they are one transposed convolution with stride f, kernel f + 2 and padding 1,
    whose kernel sums the products of the two kernels. The upsampling's bias becomes a constant per
    channel inside, folded into the block's bias, and a correction on the outermost voxels, where the
    3 × 3 convolution's zero padding drops part of it; the corrections are computed once per tile shape.
    """

    def __init__(self, up: Up, block: FusedConvBlock, skip_channels: int) -> None:
        super().__init__()
        self.block = block
        self.factors = up.factors
        self.skip_channels = skip_channels
        t, w = up.conv.weight.detach(), block.conv1.weight.detach()[:, skip_channels:]
        self.register_buffer("kernel", _compose_kernels(t, w), persistent=False)
        self.register_buffer("up_bias", up.conv.bias.detach().clone(), persistent=False)
        inner = block.conv1.bias.detach() + w.sum(dim=tuple(range(2, w.ndim))) @ self.up_bias
        self.register_buffer("inner_bias", inner, persistent=False)
        self._borders: dict[tuple[int, ...], list[tuple[tuple[slice, ...], torch.Tensor]]] = {}

    @staticmethod
    def fusable(up: nn.Module, block: nn.Module) -> bool:
        conv1 = getattr(block, "conv1", None)
        return (
            isinstance(up, Up)
            and up.mode == "transpose"
            and up.conv.bias is not None
            and isinstance(block, FusedConvBlock)
            and conv1.bias is not None
            and all(k == 3 for k in conv1.kernel_size)
            and all(p == 1 for p in conv1.padding)
            and all(s == 1 for s in conv1.stride)
            and all(d == 1 for d in conv1.dilation)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise TypeError("FusedUpDecoder takes (skip, coarse features): call forward_concat")

    def forward_concat(self, skip: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        transpose = F.conv_transpose2d if coarse.ndim == 4 else F.conv_transpose3d
        y = transpose(coarse, self.kernel, None, stride=self.factors, padding=1)
        conv, block = self.block.conv1, self.block
        w_skip, _ = block._split_weights(self.skip_channels)
        args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        y = torch.ops.mkldnn._convolution_pointwise_.binary(
            y, skip, w_skip, self.inner_bias, *args, "add", None, None, [], None
        )
        for region, correction in self._border_corrections(tuple(y.shape[2:])):
            y[(slice(None), slice(None), *region)] += correction
        return block._conv_act(block.conv2, block._post2, block.act1(y))

    def _border_corrections(self, shape: tuple[int, ...]) -> list[tuple[tuple[slice, ...], torch.Tensor]]:
        """Where the upsampled bias meets the zero padding: the full bias map minus its inner value, on
        the outermost voxels of each axis (split so that no voxel is corrected twice)."""
        if shape not in self._borders:
            w = self.block.conv1.weight.detach()[:, self.skip_channels :]
            conv = F.conv2d if w.ndim == 4 else F.conv3d
            spread = (1,) * len(shape)
            biases = self.up_bias.view(1, -1, *spread).expand(1, -1, *shape)
            inside = (self.inner_bias - self.block.conv1.bias.detach()).view(-1, *spread)
            full = conv(biases, w, None, padding=1)[0] - inside
            corrections = []
            for axis, n in enumerate(shape):
                for index in dict.fromkeys((0, n - 1)):
                    region = tuple(slice(1, m - 1) if a < axis else (slice(index, index + 1) if a == axis
                                   else slice(None)) for a, m in enumerate(shape))  # fmt: skip
                    corrections.append((region, full[(slice(None), *region)].clone()))
            if len(self._borders) >= 8:  # images of many sizes: keep the latest tile shapes only
                self._borders.pop(next(iter(self._borders)))
            self._borders[shape] = corrections
        return self._borders[shape]


def _compose_kernels(t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The transposed-convolution kernel of ``conv3x3(conv_transpose(x, t, stride=f), w)``: ``t`` is
    (in, mid, *f), ``w`` (out, mid, 3, ...); the result is (in, out, *(f + 2)), for stride f, padding 1.
    An upsampled voxel at offset p in its cell, read by tap d of the 3 × 3 kernel, lands at p − d + 2."""
    factors = t.shape[2:]
    kernel = t.new_zeros(t.shape[0], w.shape[0], *(f + 2 for f in factors))
    for p in itertools.product(*(range(f) for f in factors)):
        for d in itertools.product(*(range(3) for _ in factors)):
            at = tuple(pi - di + 2 for pi, di in zip(p, d, strict=True))
            every = (slice(None), slice(None))
            kernel[(*every, *at)] += t[(*every, *p)] @ w[(*every, *d)].T
    return kernel


def fuse_onednn(net: nn.Module, spatial_dims: int) -> nn.Module:
    """``net`` (BatchNorm folded, eval mode) with every fusable ConvBlock replaced by a
    :class:`FusedConvBlock` and, in a UNet, each upsampling folded into the decoder after it
    (:class:`FusedUpDecoder`), if oneDNN runs the fused network here and it predicts a small random input
    as ``net`` does; else ``net`` itself."""
    if not torch.backends.mkldnn.is_available():
        return net
    fused = copy.deepcopy(net)
    replaced = _replace_blocks(fused)
    if not replaced:
        return net
    if type(fused) is UNet:
        _fold_upsampling(fused)
    try:
        x = _probe_input(net, spatial_dims)
        with torch.inference_mode():
            want, got = net(x), fused(x)
        same = want.keys() == got.keys() and all(
            torch.allclose(got[k], want[k], rtol=1e-3, atol=1e-3 * float(want[k].abs().max()) + 1e-6) for k in want
        )
    except (RuntimeError, NotImplementedError) as err:
        log.debug("oneDNN fusions unavailable (%s); predicting with the unfused network", err)
        return net
    if not same:
        log.debug("the oneDNN-fused network disagrees with the unfused one; predicting with the unfused network")
        return net
    return fused


def _replace_blocks(module: nn.Module) -> int:
    count = 0
    for name, child in module.named_children():
        if FusedConvBlock.fusable(child):
            setattr(module, name, FusedConvBlock(child))
            count += 1
        else:
            count += _replace_blocks(child)
    return count


def _fold_upsampling(unet: UNet) -> None:
    """Each level's transposed convolution folded into its fused decoder block (see :class:`FusedUpDecoder`)."""
    for level, (up, block) in enumerate(zip(unet.ups, unet.decoders, strict=True)):
        if FusedUpDecoder.fusable(up, block):
            skip_channels = block.conv1.in_channels - up.conv.out_channels
            unet.decoders[level] = FusedUpDecoder(up, block, skip_channels)
            unet.ups[level] = nn.Identity()


def _probe_input(net: nn.Module, spatial_dims: int) -> torch.Tensor:
    """A random channels-last input of two size divisors per axis (at least 8 voxels) for ``net``."""
    first = next(m for m in net.modules() if isinstance(m, nn.Conv2d | nn.Conv3d))
    divisor = getattr(net, "size_divisor", 1)
    divisors = (divisor,) * spatial_dims if isinstance(divisor, int) else tuple(divisor)
    shape = (1, first.in_channels, *(max(8, 2 * d) for d in divisors))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator, device=first.weight.device)
    return x.contiguous(memory_format=memory_format(spatial_dims))
