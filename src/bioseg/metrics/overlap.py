"""Overlap of two label images: one sparse contingency table of (true, predicted) pixel counts, the
objects' sizes and their pairwise overlaps, and the IoU matrix built from them (2D and 3D alike)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bioseg.errors import BiosegError

_CHUNK = 1 << 22  # pixels per pass of the contingency count: bounds the temporary key arrays to ~32 MiB


def _as_label_image(x: Any, what: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == bool:
        return a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        if not np.issubdtype(a.dtype, np.floating) or not (
            np.isfinite(a).all() and np.array_equal(a, np.round(a))
        ):
            raise BiosegError(
                f"{what} has non-integer values (dtype {a.dtype}); expected an instance label image "
                "(0 = background, one integer id per object): label a binary mask first, e.g. "
                "skimage.measure.label(mask)"
            )
        a = a.astype(np.int64)
    if a.size and a.min() < 0:
        raise BiosegError(
            f"{what} has negative labels (min {a.min()}); expected 0 for background and positive "
            "object ids: map ignored regions to 0"
        )
    if a.size and a.dtype == np.uint64 and a.max() > np.iinfo(np.int64).max:
        raise BiosegError(
            f"{what} has labels above 2**63 - 1; relabel with skimage.segmentation.relabel_sequential"
        )
    return a


def _check_pair(pred: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    p = _as_label_image(pred, "pred")
    t = _as_label_image(truth, "truth")
    if p.shape != t.shape:
        raise BiosegError(
            f"pred has shape {p.shape} but truth has shape {t.shape}; "
            "both must be label images of the same shape (Y, X) or (Z, Y, X)"
        )
    if p.ndim == 0:
        raise BiosegError("pred and truth are scalars; expected label images (Y, X) or (Z, Y, X)")
    return p, t


def _contingency(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse contingency table over all pixels, background included.

    Returns ``(true_label, pred_label, count)`` int64 arrays, one entry per label pair that occurs,
    sorted by true label then predicted label.
    """
    t = truth.reshape(-1)
    p = pred.reshape(-1)
    if t.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    kt = int(t.max()) + 1
    kp = int(p.max()) + 1
    if kt * kp >= 2**62:  # the pair key would overflow: count on compact ids instead
        t_ids, t_inv = np.unique(t, return_inverse=True)
        p_ids, p_inv = np.unique(p, return_inverse=True)
        ti, pj, c = _contingency(p_inv.astype(np.int64), t_inv.astype(np.int64))
        return t_ids[ti].astype(np.int64), p_ids[pj].astype(np.int64), c

    dense = kt * kp <= max(t.size, 1 << 16)  # a dense table is no bigger than the image: bincount it
    counts = np.zeros(kt * kp, np.int64) if dense else None
    keys, vals = [], []
    for start in range(0, t.size, _CHUNK):
        key = t[start : start + _CHUNK].astype(np.int64) * kp + p[start : start + _CHUNK].astype(np.int64)
        if dense:
            counts += np.bincount(key, minlength=kt * kp)
        else:
            k, c = np.unique(key, return_counts=True)
            keys.append(k)
            vals.append(c)
    if dense:
        key = np.flatnonzero(counts)
        c = counts[key]
    elif len(keys) == 1:
        key, c = keys[0], vals[0]
    else:
        key, inv = np.unique(np.concatenate(keys), return_inverse=True)
        c = np.bincount(inv.reshape(-1), weights=np.concatenate(vals), minlength=key.size).astype(np.int64)
    ti, pj = np.divmod(key, kp)
    return ti, pj, c.astype(np.int64)


@dataclass
class _Overlap:
    """Objects and their pairwise overlaps, in compact indices (0..n_true-1, 0..n_pred-1)."""

    true_ids: np.ndarray
    pred_ids: np.ndarray
    true_sizes: np.ndarray
    pred_sizes: np.ndarray
    rows: np.ndarray  # true index of each overlapping pair
    cols: np.ndarray  # pred index of each overlapping pair
    inter: np.ndarray  # pixels in common

    def scores(self, criterion: str) -> np.ndarray:
        ts = self.true_sizes[self.rows].astype(np.float64)
        ps = self.pred_sizes[self.cols].astype(np.float64)
        inter = self.inter.astype(np.float64)
        if criterion == "iou":
            return inter / (ts + ps - inter)
        if criterion == "iot":
            return inter / ts
        return inter / ps


def _overlap(ti: np.ndarray, pj: np.ndarray, c: np.ndarray) -> _Overlap:
    ft, fp = ti > 0, pj > 0
    true_ids, t_inv = np.unique(ti[ft], return_inverse=True)
    pred_ids, p_inv = np.unique(pj[fp], return_inverse=True)
    true_sizes = np.bincount(t_inv.reshape(-1), weights=c[ft], minlength=true_ids.size).astype(np.int64)
    pred_sizes = np.bincount(p_inv.reshape(-1), weights=c[fp], minlength=pred_ids.size).astype(np.int64)
    both = ft & fp
    rows = np.searchsorted(true_ids, ti[both])
    cols = np.searchsorted(pred_ids, pj[both])
    return _Overlap(true_ids, pred_ids, true_sizes, pred_sizes, rows, cols, c[both])


def iou_matrix(pred: Any, truth: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every (true object, predicted object) pair.

    Args:
        pred, truth: instance label images of the same shape, ``(Y, X)`` or ``(Z, Y, X)``; 0 is the
            background, object ids are any non-negative integers (not necessarily sequential).

    Returns:
        ``(ious, true_ids, pred_ids, true_sizes, pred_sizes)``: ``ious`` is ``(n_true, n_pred)`` float64
        with row ``i`` for object ``true_ids[i]`` and column ``j`` for ``pred_ids[j]`` (ids ascending);
        sizes are pixel (voxel) counts. Non-overlapping pairs are 0.
    """
    p, t = _check_pair(pred, truth)
    ov = _overlap(*_contingency(p, t))
    ious = np.zeros((ov.true_ids.size, ov.pred_ids.size), np.float64)
    ious[ov.rows, ov.cols] = ov.scores("iou")
    return ious, ov.true_ids, ov.pred_ids, ov.true_sizes, ov.pred_sizes
