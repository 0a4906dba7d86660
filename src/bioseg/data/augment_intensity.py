"""Intensity augmentations on batches: pure functions with explicit per-sample parameters.

Every function takes an image ``(N, C, *spatial)`` (2 or 3 spatial dims) and parameters of shape ``(N,)``,
one value per sample, and returns a new tensor of the same shape and dtype. Images are assumed to be
normalised (roughly [0, 1]), so additive parameters are in those units.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _per_sample(value: Tensor | float, x: Tensor) -> Tensor:
    """A scalar or ``(N,)`` parameter as ``(N, 1, 1, ...)`` on ``x``'s device, broadcastable against ``x``."""
    v = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if v.ndim == 0:
        v = v.expand(x.shape[0])
    return v.reshape(-1, *([1] * (x.ndim - 1)))


def gaussian_kernels(sigma: Tensor, radius: int) -> Tensor:
    """Normalised 1D Gaussian kernels, one per sigma: ``sigma (M,)`` → ``(M, 2 * radius + 1)``."""
    t = torch.arange(-radius, radius + 1, dtype=sigma.dtype, device=sigma.device)
    k = torch.exp(-0.5 * (t / sigma.clamp_min(1e-3)[:, None]) ** 2)  # sigma → 0 gives a delta kernel
    return k / k.sum(dim=1, keepdim=True)


def gaussian_blur(x: Tensor, sigma: Tensor | float, truncate: float = 3.0) -> Tensor:
    """Separable Gaussian blur of each sample with its own sigma (pixels), along every spatial axis.

    x: ``(N, C, *spatial)``; sigma: scalar or ``(N,)``. Borders are mirrored (``d c b | a b c d``, like
    ``scipy.ndimage.gaussian_filter(mode="mirror")``); the kernel radius is
    ``int(truncate * max(sigma) + 0.5)``, capped so that it stays shorter than the smallest axis.
    """
    n, c, *spatial = x.shape
    d = len(spatial)
    sig = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1).expand(n)
    radius = min(int(truncate * float(sig.max()) + 0.5), min(spatial) - 1)
    if radius <= 0 or n == 0:
        return x
    weights = gaussian_kernels(sig, radius).to(x.dtype).repeat_interleave(c, dim=0)  # (N*C, K)
    conv = F.conv2d if d == 2 else F.conv3d
    # all samples and channels as groups of one depthwise convolution: one call per axis for the batch
    y = x.reshape(1, n * c, *spatial)
    for axis in range(d):
        shape = [n * c, 1] + [1] * d
        shape[2 + axis] = 2 * radius + 1
        pad = [0] * (2 * d)
        pad[2 * (d - 1 - axis)] = pad[2 * (d - 1 - axis) + 1] = radius  # F.pad lists the last axis first
        y = conv(F.pad(y, pad, mode="reflect"), weights.view(shape), groups=n * c)
    return y.reshape(x.shape)


def gaussian_noise(x: Tensor, std: Tensor | float, generator: torch.Generator | None = None) -> Tensor:
    """``x + std * N(0, 1)``; std scalar or ``(N,)``. Noise is drawn on the generator's device."""
    device = generator.device if generator is not None else x.device
    noise = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
    return x + noise * _per_sample(std, x)


def poisson_noise(x: Tensor, scale: Tensor | float, generator: torch.Generator | None = None) -> Tensor:
    """Shot noise: ``Poisson((x - min) * scale) / scale + min`` per sample.

    ``scale`` is the expected photon count at one intensity unit above the sample's minimum (scalar or
    ``(N,)``): smaller means noisier (relative noise at intensity 1 is ``1 / sqrt(scale)``).
    """
    dims = tuple(range(1, x.ndim))
    low = x.amin(dim=dims, keepdim=True)
    s = _per_sample(scale, x).clamp_min(1e-6)
    rate = ((x - low) * s).float()
    device = generator.device if generator is not None else x.device
    counts = torch.poisson(rate.to(device), generator=generator).to(x.device)
    return (counts / s + low).to(x.dtype)


def brightness_contrast(x: Tensor, brightness: Tensor | float, contrast: Tensor | float) -> Tensor:
    """``(x - mean) * contrast + mean + brightness``, the mean per sample and channel.

    x: ``(N, C, *spatial)``; brightness, contrast: scalar or ``(N,)``.
    """
    mean = x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)
    return (x - mean) * _per_sample(contrast, x) + mean + _per_sample(brightness, x)


def gamma(x: Tensor, gamma: Tensor | float) -> Tensor:
    """Gamma curve on the min-max rescaled image, per sample and channel, then back to the original range."""
    dims = tuple(range(2, x.ndim))
    low = x.amin(dim=dims, keepdim=True)
    span = (x.amax(dim=dims, keepdim=True) - low).clamp_min(1e-8)
    unit = ((x - low) / span).clamp(0, 1)
    return unit ** _per_sample(gamma, x) * span + low
