"""Pixel-pair scores of two label images: adapted Rand error and variation of information, with
scikit-image's conventions (see :mod:`bioseg.metrics.instance`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bioseg.metrics.overlap import _check_pair, _contingency


def _arand_parts(ti: np.ndarray, pj: np.ndarray, c: np.ndarray) -> tuple[float, float, float]:
    """Pixel-pair counts of the adapted Rand index over truth-foreground pixels:
    ``(pairs together in both, pairs together in truth, pairs together in pred)`` (ordered pairs)."""
    fg = ti > 0
    c = c[fg].astype(np.float64)
    n = c.sum()
    a = np.bincount(np.unique(ti[fg], return_inverse=True)[1].reshape(-1), weights=c)
    b = np.bincount(np.unique(pj[fg], return_inverse=True)[1].reshape(-1), weights=c)
    return float(c @ c - n), float(a @ a - n), float(b @ b - n)


def _voi(ti: np.ndarray, pj: np.ndarray, c: np.ndarray) -> tuple[float, float]:
    """``(H(pred | truth), H(truth | pred))`` in bits, over all pixels."""
    n = c.sum()
    if n == 0:
        return 0.0, 0.0
    pxy = c / n
    t_inv = np.unique(ti, return_inverse=True)[1].reshape(-1)
    p_inv = np.unique(pj, return_inverse=True)[1].reshape(-1)
    px = np.bincount(t_inv, weights=pxy)
    py = np.bincount(p_inv, weights=pxy)
    split = -float(np.sum(pxy * np.log2(pxy / px[t_inv])))
    merge = -float(np.sum(pxy * np.log2(pxy / py[p_inv])))
    return max(split, 0.0), max(merge, 0.0)  # clip rounding noise below zero


def _arand_from_parts(both: float, sum_a: float, sum_b: float, n_pairs_defined: bool) -> tuple[float, ...]:
    if not n_pairs_defined:
        return math.nan, math.nan, math.nan
    precision = both / sum_b if sum_b > 0 else 1.0
    recall = both / sum_a if sum_a > 0 else 1.0
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return 1.0 - f, precision, recall


def adapted_rand_error(pred: Any, truth: Any) -> tuple[float, float, float]:
    """``(error, precision, recall)`` of the adapted Rand index over the truth's foreground pixels.

    The error equals ``skimage.metrics.adapted_rand_error(truth, pred)[0]``. Precision = pixel pairs
    together in both / pairs together in ``pred``; recall = the same over pairs together in ``truth``
    (scikit-image returns these two swapped). All NaN when the truth has no foreground."""
    p, t = _check_pair(pred, truth)
    ti, pj, c = _contingency(p, t)
    return _arand_from_parts(*_arand_parts(ti, pj, c), bool(np.any(ti > 0)))  # type: ignore[return-value]


def variation_of_information(pred: Any, truth: Any) -> tuple[float, float]:
    """``(split, merge) = (H(pred | truth), H(truth | pred))`` in bits over all pixels, equal to
    ``skimage.metrics.variation_of_information(truth, pred)``; their sum is the VOI."""
    p, t = _check_pair(pred, truth)
    return _voi(*_contingency(p, t))
