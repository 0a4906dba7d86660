"""Sliding-window prediction of one image of any size, 2D or 3D, with blended overlapping tiles.

Tile placement: along each axis the number of tiles is MONAI's (``ceil((size - patch) / step) + 1`` with
``step = int(patch * (1 - overlap))``), but the tiles are spread evenly between 0 and ``size - patch``
(as nnU-Net does) instead of stepping by ``step`` and pushing the last tile back flush with the end, and
every start but the last is a multiple of the network's size divisor (its pooling grid, see
:func:`tile_starts`). Both place the tiles identically whenever ``size - patch`` is a multiple of ``step``
and ``step`` one of the divisor (e.g. 80 = 32 + 2*24 for patch 32, overlap 0.25, divisor 8); elsewhere the
spacing differs, and even spacing never overlaps less than asked. The blending window is MONAI's, so
results agree with ``monai.inferers.sliding_window_inference`` wherever the tile positions coincide.
"""

from __future__ import annotations

import functools
import itertools
import math
import sys
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from bioseg.errors import BiosegError

__all__ = ["gaussian_window", "tile_starts", "sliding_window", "blend_tiles", "tile_size", "pad_axis"]

_PAD_MODES = ("reflect", "replicate", "constant")
_BLENDINGS = ("gaussian", "constant")


def gaussian_window(
    patch_size: Sequence[int],
    sigma_scale: float | Sequence[float] = 0.125,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Separable gaussian blending weights, shape ``(*patch_size)``, peak at the centre.

    Same formula as MONAI's "gaussian" importance map: ``sigma = sigma_scale * patch`` per axis, coordinates
    centred on the patch, values clipped below at 1e-3 so that no pixel has zero weight. Cached per
    (patch_size, sigma_scale, device, dtype): the same tensor object is returned for the same arguments,
    so callers must not modify it in place.
    """
    patch = tuple(int(p) for p in patch_size)
    if not patch or any(p < 1 for p in patch):
        raise BiosegError(f"patch_size is {patch}; expected one positive size per spatial axis")
    if isinstance(sigma_scale, Sequence):
        sigmas = tuple(float(s) for s in sigma_scale)
        if len(sigmas) != len(patch):
            raise BiosegError(
                f"sigma_scale has {len(sigmas)} values for a {len(patch)}-axis patch; "
                "give one value or one per axis"
            )
    else:
        sigmas = (float(sigma_scale),) * len(patch)
    if any(s <= 0 for s in sigmas):
        raise BiosegError(f"sigma_scale is {sigma_scale}; expected positive values (0.125 is usual)")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return _gaussian_window(patch, sigmas, str(dev), dtype)


@functools.lru_cache(maxsize=32)
def _gaussian_window(
    patch: tuple[int, ...], sigma_scale: tuple[float, ...], device: str, dtype: torch.dtype
) -> torch.Tensor:
    window = None
    for axis, (p, s) in enumerate(zip(patch, sigma_scale, strict=True)):
        # float32 arithmetic exactly as MONAI does it, so the two windows agree bit for bit
        x = torch.arange(-(p - 1) / 2.0, (p - 1) / 2.0 + 1, dtype=torch.float32, device=device)
        x = torch.exp(x**2 / (-2 * (p * s) ** 2))
        window = x if axis == 0 else window.unsqueeze(-1) * x[(None,) * axis]
    return window.clamp_min(1e-3).to(dtype)


def tile_starts(size: int, patch: int, overlap: float, align: int = 1) -> list[int]:
    """Start offsets of tiles of length ``patch`` covering ``[0, size)``; the last ends exactly at ``size``.

    Requires ``size >= patch`` (pad the image first). Consecutive tiles overlap by at least
    ``patch - int(patch * (1 - overlap))`` pixels. With ``align`` > 1 (the network's downsampling factor)
    every start but the last (flush with the end) is a multiple of ``align``: a network that pools is
    translation-equivariant only for shifts by whole pooling cells, so tiles on one pooling grid predict
    the pixels they share alike, and different tilings of an image give the same labels (fp32 labels of a
    2048² image in tiles of 256² and of 464 × 560: Dice 0.9921 off the grid, 0.9995 on it;
    benchmarks/bench_prediction.py). An axis whose step is under ``align`` is not aligned.
    """
    if patch < 1 or size < patch:
        raise BiosegError(f"tile length {patch} for an axis of size {size}; expected 1 <= patch <= size")
    if not 0 <= overlap < 1:
        raise BiosegError(f"overlap is {overlap}; expected 0 <= overlap < 1 (a fraction of the patch)")
    if align < 1:
        raise BiosegError(f"align is {align}; expected a positive number of pixels")
    step = max(1, int(patch * (1 - overlap)))
    if step < align:
        align = 1
    step -= step % align
    span = size - patch
    # spread whole `align` units evenly over the span rounded up, so no gap exceeds the aligned step
    units = math.ceil(span / align)
    n = math.ceil(units * align / step) + 1
    if n == 1:
        return [0]
    # round half up, in integers, so positions are exact multiples of `step` whenever span allows it
    inner = [align * ((2 * i * units + (n - 1)) // (2 * (n - 1))) for i in range(n - 1)]
    return inner + [span]


def _per_axis(value: int | Sequence[int], ndim: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        out = (value,) * ndim
    else:
        out = tuple(int(v) for v in value)
    if len(out) != ndim or any(v < 1 for v in out):
        raise BiosegError(f"{name} is {value}; expected a positive integer or {ndim} positive integers")
    return out


def _pad_axis(x: torch.Tensor, dim: int, before: int, after: int, mode: str) -> torch.Tensor:
    """Pad one axis of ``x``; reflection (edge not repeated) falls back to replicate for a 1-pixel axis."""
    if before == 0 and after == 0:
        return x
    n = x.shape[dim]
    if mode == "constant":
        pad = [0, 0] * (x.ndim - 1 - dim) + [before, after]
        return F.pad(x, pad, mode="constant", value=0.0)
    idx = torch.arange(-before, n + after, device=x.device)
    if mode == "reflect" and n > 1:
        # periodic mirror, so pads longer than the axis keep mirroring instead of failing
        period = 2 * (n - 1)
        idx = idx.remainder(period)
        idx = torch.where(idx >= n, period - idx, idx)
    else:
        idx = idx.clamp(0, n - 1)
    return x.index_select(dim, idx)


def sliding_window(
    predict: Callable[[torch.Tensor], Mapping[str, torch.Tensor]],
    image: torch.Tensor,
    patch_size: Sequence[int],
    *,
    overlap: float | Sequence[float] = 0.25,
    blending: str = "gaussian",
    batch_size: int = 4,
    size_divisor: Sequence[int] | int = 1,
    pad_mode: str = "reflect",
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Predict a whole image tile by tile and blend the overlapping tile predictions.

    Args:
        predict: maps a batch of tiles ``(B, C, *patch)`` to a dict of ``(B, K_head, *patch)`` tensors
            (logits or probabilities; whatever it returns is blended linearly). Runs under no_grad.
        image: ``(C, *spatial)`` one image, 2D or 3D, on any device.
        patch_size: tile size per spatial axis. Along each axis it is rounded down to a multiple of
            ``size_divisor`` (at least one divisor). An axis shorter than the tile is padded symmetrically
            up to the tile with ``pad_mode`` ("reflect" (mirror, edge pixel not repeated; replicate for a
            1-pixel axis), "replicate" or "constant" (zeros)); the padding is cropped from the output.
        overlap: fraction of the tile shared by neighbouring tiles, in [0, 1); one for all axes or one per
            axis (see :mod:`bioseg.inference.tile_plan`).
        blending: "gaussian" (centre of a tile weighs more, see :func:`gaussian_window`) or "constant".
        batch_size: tiles per ``predict`` call; memory is the output plus this many tiles.
        size_divisor: what the network needs the input size to be a multiple of, per axis or for all.
        progress: show a tqdm bar over tile batches on stderr.

    Returns:
        dict with the keys of ``predict``'s output, each ``(K_head, *spatial)`` float32 on the image's device:
        ``sum(w * pred) / sum(w)`` over the tiles covering each pixel.
    """
    patch = _check_arguments(image, patch_size, overlap, blending, batch_size, size_divisor, pad_mode)
    overlaps = (overlap,) * len(patch) if isinstance(overlap, int | float) else tuple(overlap)
    padded, crop = _pad_to_patch(image, patch, pad_mode)
    align = _per_axis(size_divisor, len(patch), "size_divisor")
    tiles = _tile_regions(tuple(padded.shape[1:]), patch, overlaps, align)
    outputs = blend_tiles(predict, padded, tiles, patch, blending=blending, batch_size=batch_size, progress=progress)
    return {key: out[(slice(None), *crop)].contiguous() for key, out in outputs.items()}


def blend_tiles(
    predict: Callable[[torch.Tensor], Mapping[str, torch.Tensor]],
    image: torch.Tensor,
    tiles: Sequence[tuple[slice, ...]],
    patch: tuple[int, ...],
    *,
    blending: str = "gaussian",
    batch_size: int = 4,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """The blend of the tiles ``tiles`` (regions of ``image``, each of shape ``patch``, in this order):
    ``sum(w * pred) / sum(w)`` per pixel, ``(K_head, *spatial)`` per head, on the pixels they cover
    (elsewhere the result is undefined). :func:`sliding_window` calls it with every tile of the image;
    block-wise prediction with the tiles of the whole image's grid that touch one block, so that each
    of the block's pixels is the same weighted sum, over the same tiles in the same order."""
    full = tuple(image.shape[1:])
    device = image.device
    window = gaussian_window(patch, device=device) if blending == "gaussian" else torch.ones(patch, device=device)
    outputs: dict[str, torch.Tensor] = {}
    weight = torch.zeros(full, dtype=torch.float32, device=device)
    batches = range(0, len(tiles), batch_size)
    from tqdm import tqdm

    bar = tqdm(total=len(batches), desc="tiles", unit="batch", file=sys.stderr, disable=not progress)
    with bar, torch.no_grad():
        for first in batches:
            regions = list(tiles[first : first + batch_size])
            batch = torch.stack([image[(slice(None), *r)] for r in regions])
            result = predict(batch)
            _check_prediction(result, outputs, tuple(batch.shape), patch)
            _add_weighted(outputs, result, regions, window, full)
            for r in regions:
                weight[r] += window
            bar.update(1)
    # pixels no tile covers have weight 0: clamp so they come out 0 rather than NaN
    weight.clamp_(min=1e-12)
    return {key: out.div_(weight) for key, out in outputs.items()}


def tile_size(patch_size: Sequence[int] | int, size_divisor: Sequence[int] | int, ndim: int) -> tuple[int, ...]:
    """The tile :func:`sliding_window` uses: ``patch_size`` rounded down per axis to a multiple of
    ``size_divisor`` (at least one divisor)."""
    patch = _per_axis(patch_size, ndim, "patch_size")
    divisor = _per_axis(size_divisor, ndim, "size_divisor")
    return tuple(max(d, p // d * d) for p, d in zip(patch, divisor, strict=True))


def pad_axis(x: torch.Tensor, dim: int, before: int, after: int, mode: str = "reflect") -> torch.Tensor:
    """Pad one axis of ``x`` as :func:`sliding_window` pads an axis shorter than the tile."""
    return _pad_axis(x, dim, before, after, mode)


def _tile_regions(
    full: tuple[int, ...], patch: tuple[int, ...], overlaps: tuple[float, ...], align: tuple[int, ...]
) -> list[tuple[slice, ...]]:
    """The region of every tile in an image of shape ``full`` (see :func:`tile_starts`), C order."""
    starts = [tile_starts(n, p, o, a) for n, p, o, a in zip(full, patch, overlaps, align, strict=True)]
    return [
        tuple(slice(s, s + p) for s, p in zip(origin, patch, strict=True)) for origin in itertools.product(*starts)
    ]


def _check_arguments(
    image: torch.Tensor,
    patch_size: Sequence[int],
    overlap: float | Sequence[float],
    blending: str,
    batch_size: int,
    size_divisor: Sequence[int] | int,
    pad_mode: str,
) -> tuple[int, ...]:
    """Validate the arguments of :func:`sliding_window`; returns the tile size, rounded down per axis to a
    multiple of ``size_divisor`` (at least one divisor)."""
    if not isinstance(image, torch.Tensor) or image.ndim not in (3, 4):
        shape = tuple(image.shape) if hasattr(image, "shape") else type(image).__name__
        raise BiosegError(f"image is {shape}; expected a tensor (C, *spatial) with 2 or 3 spatial axes")
    ndim = image.ndim - 1
    patch = tile_size(patch_size, size_divisor, ndim)
    if blending not in _BLENDINGS:
        raise BiosegError(f"blending is {blending!r}; expected one of {list(_BLENDINGS)}")
    if pad_mode not in _PAD_MODES:
        raise BiosegError(f"pad_mode is {pad_mode!r}; expected one of {list(_PAD_MODES)}")
    overlaps = [overlap] if isinstance(overlap, int | float) else list(overlap)
    if len(overlaps) not in (1, ndim) or not all(0 <= o < 1 for o in overlaps):
        raise BiosegError(
            f"overlap is {overlap}; expected 0 <= overlap < 1 (a fraction of the patch), one or one per axis"
        )
    if batch_size < 1:
        raise BiosegError(f"batch_size is {batch_size}; expected at least 1 tile per forward pass")
    return patch


def _pad_to_patch(
    image: torch.Tensor, patch: tuple[int, ...], pad_mode: str
) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """``image`` padded symmetrically along every axis shorter than the tile, and the crop that takes the
    padding off again."""
    padded = image
    crop = []
    for axis, (n, p) in enumerate(zip(image.shape[1:], patch, strict=True)):
        diff = max(p - n, 0)
        before = diff // 2
        padded = _pad_axis(padded, axis + 1, before, diff - before, pad_mode)
        crop.append(slice(before, before + n))
    return padded, tuple(crop)


def _check_prediction(
    result: object, outputs: Mapping[str, torch.Tensor], batch_shape: tuple[int, ...], patch: tuple[int, ...]
) -> None:
    """``predict``'s output for one batch must be a dict of ``(B, K, *patch)`` tensors with the heads of
    the earlier batches."""
    if not isinstance(result, Mapping):
        raise BiosegError(
            f"predict returned {type(result).__name__}; expected a dict of head name -> (B, K, *patch) tensor"
        )
    if outputs and set(result) != set(outputs):
        raise BiosegError(
            f"predict returned heads {sorted(result)} for one batch of tiles and {sorted(outputs)} "
            "for an earlier one; it must return the same heads every call"
        )
    n_tiles = batch_shape[0]
    for key, value in result.items():
        if value.ndim != len(patch) + 2 or value.shape[0] != n_tiles or value.shape[2:] != patch:
            raise BiosegError(
                f"predict returned {key!r} of shape {tuple(value.shape)} for tiles of shape "
                f"{batch_shape}; expected ({n_tiles}, K, *{patch}): one output per tile, "
                "same spatial size as the tile"
            )


def _add_weighted(
    outputs: dict[str, torch.Tensor],
    result: Mapping[str, torch.Tensor],
    regions: list[tuple[slice, ...]],
    window: torch.Tensor,
    full: tuple[int, ...],
) -> None:
    """Add ``window * tile prediction`` of one batch into ``outputs`` (created, zero, at the first batch)."""
    device = window.device
    for key, value in result.items():
        value = value.to(device=device, dtype=torch.float32)
        if key not in outputs:
            outputs[key] = value.new_zeros((value.shape[1], *full))
        out = outputs[key]
        for tile_pred, r in zip(value, regions, strict=True):
            out[(slice(None), *r)].addcmul_(tile_pred, window)
