"""Spatial augmentations on batches: exact flips and quarter turns, and one resampling grid.

Tensors are ``(N, C, *spatial)`` with 2 or 3 spatial dims. Spatial axes are numbered 0..d-1 (axis 0 is the
first spatial axis, tensor dim 2). Rotation, scaling and elastic deformation are expressed as a linear map
``M (N, d, d)`` plus a displacement field ``(N, *spatial, d)``, both in pixels about the image centre and in
spatial-axis order; ``sampling_grid`` turns them into one grid, so that each tensor is resampled once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from bioseg.data.augment_intensity import gaussian_blur
from bioseg.errors import BiosegError


def on_samples(x: Tensor, idx: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """``x`` with samples ``idx`` (1D, any device) replaced by ``fn`` of them; out of place.

    When ``idx`` covers the whole batch, ``fn`` runs on ``x`` itself (no gather/scatter copies).
    """
    if idx.numel() == x.shape[0]:
        return fn(x).to(x.dtype).contiguous()
    idx = idx.to(x.device)
    return x.index_copy(0, idx, fn(x.index_select(0, idx)).to(x.dtype))


def flip(x: Tensor, flips: Tensor) -> Tensor:
    """Flip sample ``n`` along spatial axis ``a`` where ``flips[n, a]``.

    x: ``(N, C, *spatial)``; flips: ``(N, d)`` bool.

    Flipping twice with the same ``flips`` is the identity.
    """
    flips = flips.to("cpu", torch.bool)  # decisions on the host: no device syncs inside the loop
    out = x
    for axis in range(flips.shape[1]):
        idx = flips[:, axis].nonzero().flatten()
        if idx.numel():
            out = on_samples(out, idx, lambda t, dim=2 + axis: t.flip(dim))
    return out


def rot90(x: Tensor, k: Tensor, axes: Sequence[int] = (-2, -1)) -> Tensor:
    """Rotate sample ``n`` by ``k[n]`` quarter turns in the plane of two spatial ``axes``, from the first
    axis towards the second (as ``torch.rot90``). x ``(N, C, *spatial)``, k ``(N,)`` integer.

    Odd ``k`` needs a square plane, otherwise the shape would change: raises BiosegError.
    """
    d = x.ndim - 2
    dims = (2 + axes[0] % d, 2 + axes[1] % d)
    k = k.to("cpu", torch.long) % 4
    square = x.shape[dims[0]] == x.shape[dims[1]]
    if not square and bool((k % 2 == 1).any()):
        raise BiosegError(
            f"rot90 by an odd number of quarter turns needs a square plane, but axes {tuple(axes)} have "
            f"sizes {x.shape[dims[0]]} and {x.shape[dims[1]]}; use square patches or only even turns"
        )
    out = x
    for turns in (1, 2, 3):
        idx = (k == turns).nonzero().flatten()
        if idx.numel():
            out = on_samples(out, idx, lambda t, q=turns: torch.rot90(t, q, dims))
    return out


def rotation_matrix(angles: Tensor, spatial_dims: int, axes: Sequence[int] = (-2, -1)) -> Tensor:
    """Sampling maps for a rotation by ``angles (N,)`` radians in the plane of ``axes`` → ``(N, d, d)``.

    A positive angle turns the content from the first axis towards the second, like ``torch.rot90``:
    an angle of pi/2 on a square plane equals ``rot90(k=1)``.
    """
    a, b = axes[0] % spatial_dims, axes[1] % spatial_dims
    cos, sin = torch.cos(angles), torch.sin(angles)
    m = torch.eye(spatial_dims, dtype=angles.dtype, device=angles.device).repeat(len(angles), 1, 1)
    # the output pixel at p samples the input at R(-angle) p
    m[:, a, a], m[:, a, b], m[:, b, a], m[:, b, b] = cos, sin, -sin, cos
    return m


def scale_matrix(factors: Tensor, spatial_dims: int) -> Tensor:
    """Sampling maps for an isotropic zoom by ``factors (N,)`` → ``(N, d, d)``; > 1 enlarges the content."""
    eye = torch.eye(spatial_dims, dtype=factors.dtype, device=factors.device)
    return eye / factors[:, None, None]


def elastic_displacement(
    shape: Sequence[int],
    alpha: Tensor,
    sigma: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Smooth random displacement fields ``(N, *shape, d)`` in pixels; largest component ``alpha[n]``.

    Uniform noise is smoothed with a Gaussian of ``sigma`` pixels. For speed the noise lives on a grid
    ``sigma / 2`` times coarser (the smoothed field varies little between its points), is scaled there and
    then upsampled linearly, so the cost hardly depends on ``sigma``. Linear upsampling never exceeds the
    coarse extremes, so no component exceeds ``alpha``.
    """
    d = len(shape)
    n = len(alpha)
    device = torch.device(device) if device is not None else alpha.device
    step = max(1.0, sigma / 2)
    coarse = [max(2, round((s - 1) / step) + 1) for s in shape]
    gen_device = generator.device if generator is not None else device
    noise = torch.rand((n, d, *coarse), generator=generator, device=gen_device).to(device) * 2 - 1
    field = gaussian_blur(noise, sigma / step)
    peak = field.abs().amax(dim=tuple(range(1, d + 2)), keepdim=True).clamp_min(1e-12)
    field = field * (alpha.to(device=device, dtype=field.dtype).reshape(-1, *([1] * (d + 1))) / peak)
    mode = "bilinear" if d == 2 else "trilinear"
    return F.interpolate(field, size=list(shape), mode=mode, align_corners=True).movedim(1, -1)


def sampling_grid(matrix: Tensor, displacement: Tensor | None, shape: Sequence[int]) -> Tensor:
    """The ``grid_sample`` grid ``(N, *shape, d)`` (normalised, x-first order) that samples the input at
    ``matrix @ p + displacement(p)`` for every output pixel ``p`` (pixels about the centre, spatial order).

    matrix: ``(N, d, d)``; displacement: ``(N, *shape, d)`` or None.
    """
    n, d = matrix.shape[0], len(shape)
    half = torch.tensor([s / 2 for s in shape], dtype=torch.float32, device=matrix.device)
    # with align_corners=False a normalised unit is half the axis length in pixels
    theta = matrix.float() * half[None, :] / half[:, None]
    theta = theta.flip(1).flip(2)  # spatial order (z, y, x) → grid_sample order (x, y, z)
    theta = torch.cat([theta, theta.new_zeros(n, d, 1)], dim=2)
    grid = F.affine_grid(theta, [n, 1, *shape], align_corners=False)
    if displacement is not None:
        grid = grid + (displacement.float() / half).flip(-1)
    return grid


def inside(grid: Tensor) -> Tensor:
    """``(N, 1, *spatial)``: 1.0 where the sampled value depends on no padding, else 0.0.

    That is where the grid point lies within the hull of the input's pixel centres (linear interpolation
    mixes in padding beyond it), with a tolerance of 1e-4 pixels for rounding.
    """
    sizes = torch.tensor(grid.shape[-2:0:-1], dtype=grid.dtype, device=grid.device)  # x, y, z order
    limit = 1 - (1 - 2e-4) / sizes
    return (grid.abs() <= limit).all(dim=-1).unsqueeze(1).float()


def resample(x: Tensor, grid: Tensor, padding_mode: str = "zeros") -> Tensor:
    """Resample ``x (N, C, *spatial)`` at ``grid`` (from ``sampling_grid``), keeping its dtype.

    Float tensors are interpolated linearly; integer and bool tensors (labels) by nearest neighbour, so no
    new values appear. ``padding_mode`` is grid_sample's: zeros, border or reflection.
    """
    if x.dtype.is_floating_point:
        out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
        return out.to(x.dtype)
    # float32 holds integers exactly up to 2**24; larger label values need float64
    big = x.dtype in (torch.int32, torch.int64) and x.numel() and int(x.abs().max()) >= 2**24
    work = torch.float64 if big else torch.float32
    out = F.grid_sample(x.to(work), grid.to(work), mode="nearest", padding_mode=padding_mode, align_corners=False)
    return out > 0.5 if x.dtype == torch.bool else out.round().to(x.dtype)
