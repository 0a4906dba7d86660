"""The augmentation preview's picture: patches in a grid, one intensity scale, masks outlined per class."""

from __future__ import annotations

import math

import numpy as np

from bioseg.errors import BiosegError

__all__ = ["MIN_TILE", "grid_shape", "tile_grid"]

GAP = 4  # pixels between tiles (and around the grid)
MIN_TILE = 128  # small patches are enlarged (nearest neighbour) to at least this many pixels


def grid_shape(n: int, cols: int | None = None) -> tuple[int, int]:
    """(rows, cols) of a grid of ``n`` tiles: about square, wider than tall."""
    if n < 1:
        raise BiosegError(f"-n {n}: the preview needs at least one sample")
    cols = cols or math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def _display(planes: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``(C, Y, X)`` float → ``(Y, X, 3)`` uint8 with fixed per-channel limits: three channels as RGB,
    two as magenta/green, otherwise the first channel in grey."""
    c = planes.shape[0]
    scaled = np.clip((planes - low[:c, None, None]) / (high[:c, None, None] - low[:c, None, None]), 0, 1)
    if c == 3:
        rgb = np.moveaxis(scaled, 0, -1)
    elif c == 2:
        rgb = np.stack([scaled[0], scaled[1], scaled[0]], -1)
    else:
        rgb = np.repeat(scaled[0][..., None], 3, -1)
    return np.rint(rgb * 255).astype(np.uint8)


def _outline(rgb: np.ndarray, labels: np.ndarray, width: int = 1, alpha: float = 0.2) -> np.ndarray:
    """Tint each class region lightly (``alpha``) and draw its inner outline (``width`` pixels) in the
    class colour: the tint says which side of the line is the object."""
    from scipy import ndimage
    from skimage.segmentation import find_boundaries

    from bioseg.reports.charts import CLASS_COLOURS

    out = rgb.astype(np.float32)
    inside = labels > 0
    colours = CLASS_COLOURS[(np.maximum(labels, 1) - 1) % len(CLASS_COLOURS)].astype(np.float32)
    out[inside] = (1 - alpha) * out[inside] + alpha * colours[inside]
    edges = find_boundaries(labels, mode="inner") & inside
    if width > 1:
        edges = ndimage.binary_dilation(edges, iterations=width - 1) & inside
    out[edges] = colours[edges]
    return np.rint(out).astype(np.uint8)


def tile_grid(
    images: np.ndarray,
    labels: np.ndarray,
    cols: int | None = None,
    low: np.ndarray | None = None,
    high: np.ndarray | None = None,
    scale: int | None = None,
) -> np.ndarray:
    """A grid image of ``(N, C, Y, X)`` patches with ``(N, Y, X)`` class labels outlined.

    Each tile is enlarged ``scale`` times (default: the smallest factor giving ``MIN_TILE`` pixels), tiles are
    separated by ``GAP`` white pixels. ``low``/``high`` (per channel) fix the display range; default the
    1st and 99.8th percentiles of all patches. Returns ``(rows·(h + GAP) + GAP, cols·(w + GAP) + GAP, 3)``
    uint8.
    """
    images, labels = np.asarray(images, np.float32), np.asarray(labels)
    n, c, h, w = images.shape
    if labels.shape != (n, h, w):
        raise BiosegError(f"labels of shape {labels.shape} do not fit patches of shape {images.shape}")
    if low is None or high is None:
        flat = np.moveaxis(images, 1, 0).reshape(c, -1)
        low, high = np.percentile(flat, 1.0, axis=1), np.percentile(flat, 99.8, axis=1)
    low, high = np.asarray(low, np.float32), np.asarray(high, np.float32)
    high = np.where(high > low, high, low + 1.0)
    scale = scale or max(1, math.ceil(MIN_TILE / max(h, w)))
    rows, cols = grid_shape(n, cols)
    th, tw = h * scale, w * scale
    grid = np.full((rows * (th + GAP) + GAP, cols * (tw + GAP) + GAP, 3), 255, np.uint8)
    for i in range(n):
        big = images[i].repeat(scale, 1).repeat(scale, 2)
        lab = labels[i].repeat(scale, 0).repeat(scale, 1).astype(np.int64)
        tile = _outline(_display(big, low, high), lab, width=max(1, scale // 2 + 1))
        r, k = divmod(i, cols)
        y, x = GAP + r * (th + GAP), GAP + k * (tw + GAP)
        grid[y : y + th, x : x + tw] = tile
    return grid
