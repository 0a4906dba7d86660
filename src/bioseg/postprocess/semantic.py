"""Semantic cleanup of label maps: small components removed, holes filled (2D and 3D)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def clean_labels(labels: np.ndarray, min_size: int = 0, fill_holes: bool = False) -> np.ndarray:
    """Per class ≥ 1: drop connected components smaller than ``min_size`` (to background) and, when
    ``fill_holes``, fill holes fully enclosed by the class. ``labels`` is ``(*spatial)`` integer."""
    if min_size <= 0 and not fill_holes:
        return labels
    out = labels.copy()
    for cls in np.unique(labels):
        if cls == 0:
            continue
        region = labels == cls
        if min_size > 0:
            components, n = ndimage.label(region)
            sizes = np.bincount(components.ravel(), minlength=n + 1)
            small = sizes < min_size
            small[0] = False
            out[small[components]] = 0
            region = out == cls
        if fill_holes:
            filled = ndimage.binary_fill_holes(region)
            out[filled & (out == 0)] = cls
    return out
