"""Image → model input and mask → class indices: one code path for training and prediction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from bioseg.errors import BiosegError


def select_channels(image: np.ndarray, channels: Sequence[int] | None, in_channels: int, name: str) -> np.ndarray:
    """Pick the model's input channels from a ``(C, *spatial)`` image.

    ``channels=None`` takes every channel, which must then equal ``in_channels``.
    """
    found = image.shape[0]
    if channels is not None:
        bad = [c for c in channels if not -found <= c < found]
        if bad:
            raise BiosegError(
                f"{name} has {found} channel(s); data.channels asks for index {bad[0]}: use indices 0..{found - 1}"
            )
        image = image[list(channels)]
    if image.shape[0] != in_channels:
        how = "set data.channels to choose them" if channels is None else "fix data.channels"
        raise BiosegError(f"{name} gives {image.shape[0]} channel(s) but the model expects {in_channels}; {how}")
    return image


def normalize(
    image: np.ndarray,
    mode: str = "per_image",
    percentiles: Sequence[float] = (1.0, 99.8),
    low: Sequence[float] | None = None,
    high: Sequence[float] | None = None,
) -> np.ndarray:
    """Per-channel ``(x - low) / (high - low)`` as float32; ``image`` is ``(C, *spatial)``."""
    image = image.astype(np.float32, copy=False)
    if mode == "none":
        return image
    if mode == "per_image":
        flat = image.reshape(image.shape[0], -1)
        lo, hi = np.percentile(flat, percentiles, axis=1)
    elif mode == "dataset":
        if low is None or high is None or len(low) != image.shape[0] or len(high) != image.shape[0]:
            raise BiosegError(
                f"normalization.low/high need one value per channel ({image.shape[0]}); "
                "re-run 'bioseg init-config' or fix them in the config"
            )
        lo, hi = np.asarray(low, np.float32), np.asarray(high, np.float32)
    else:
        raise BiosegError(f"unknown normalization mode '{mode}'; valid: per_image, dataset, none")
    shape = (-1,) + (1,) * (image.ndim - 1)
    scale = np.maximum(np.asarray(hi, np.float32) - np.asarray(lo, np.float32), 1e-6)
    return (image - np.asarray(lo, np.float32).reshape(shape)) / scale.reshape(shape)


def dataset_percentiles(
    images: Sequence[np.ndarray], percentiles: Sequence[float] = (1.0, 99.8), max_values: int = 2_000_000
) -> tuple[list[float], list[float]]:
    """Per-channel percentiles over several ``(C, *spatial)`` images (subsampled to bound memory)."""
    channels = images[0].shape[0]
    per_image = max(1, max_values // max(1, len(images)))
    rng = np.random.default_rng(0)
    low, high = [], []
    for c in range(channels):
        values = []
        for img in images:
            flat = img[c].ravel()
            if flat.size > per_image:
                flat = flat[rng.integers(0, flat.size, per_image)]
            values.append(flat.astype(np.float32))
        lo, hi = np.percentile(np.concatenate(values), percentiles)
        low.append(float(lo))
        high.append(float(hi))
    return low, high


def map_mask(mask: np.ndarray, mask_values: Mapping[int, int] | None, num_classes: int, name: str) -> np.ndarray:
    """Raw mask values → class indices ``0..num_classes-1`` as int64 (lookup table, not a loop)."""
    values = np.unique(mask)
    if mask_values:
        unknown = sorted(set(values.tolist()) - set(int(k) for k in mask_values))
        if unknown:
            raise BiosegError(f"{name} has values {unknown} that data.mask_values does not map; add them to it")
        lut = np.zeros(int(values.max()) + 1, dtype=np.int64)
        for raw, cls in mask_values.items():
            if int(raw) < lut.size:
                lut[int(raw)] = cls
        mask = lut[mask]
    elif values.size and (values.min() < 0 or values.max() >= num_classes):
        raise BiosegError(
            f"{name} has values {values.tolist()[:8]}; a mask must hold class indices 0..{num_classes - 1}: "
            "add data.mask_values (e.g. {255: 1})"
        )
    return mask.astype(np.int64, copy=False)


def value_counts(mask: np.ndarray) -> dict[int, int]:
    """Raw value → pixels; bincount when the values are small non-negative integers (fast)."""
    if mask.size and mask.dtype.kind in "ui" and mask.min() >= 0 and mask.max() < 1 << 20:
        hist = np.bincount(mask.ravel())
        return {int(v): int(hist[v]) for v in np.flatnonzero(hist)}
    values, n = np.unique(mask, return_counts=True)
    return {int(v): int(k) for v, k in zip(values, n, strict=True)}
