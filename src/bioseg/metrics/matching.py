"""One-to-one matching of true and predicted objects at a score threshold (see
:mod:`bioseg.metrics.instance` for the rule: the most pairs, then the largest total score)."""

from __future__ import annotations

import numpy as np

from bioseg.errors import BiosegError


def _check_threshold(t: float) -> float:
    t = float(t)
    if not 0.0 < t <= 1.0:
        raise BiosegError(
            f"matching threshold {t!r} is outside (0, 1]; objects need a positive overlap score to be "
            "matched: use thresholds such as 0.5"
        )
    return t


def _local_index(comp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each node's index within its component, and the number of nodes per component."""
    order = np.argsort(comp, kind="stable")
    counts = np.bincount(comp)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    local = np.empty(comp.size, np.int64)
    local[order] = np.arange(comp.size) - starts[comp[order]]
    return local, counts


def _match_sparse(rows: np.ndarray, cols: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Optimal one-to-one matching among candidate pairs; returns the indices of the chosen pairs.

    ``rows``/``cols`` index true/predicted objects, one entry per overlapping pair (no duplicates).
    Most pairs, then largest total score (see the module docstring).
    """
    cand = np.flatnonzero(scores >= threshold)
    if cand.size == 0:
        return cand
    r, c = rows[cand], cols[cand]
    ur, r_inv = np.unique(r, return_inverse=True)
    uc, c_inv = np.unique(c, return_inverse=True)
    if ur.size == cand.size and uc.size == cand.size:  # no object has two candidates: nothing to choose
        return cand

    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n_r = ur.size
    n = n_r + uc.size
    graph = coo_matrix((np.ones(cand.size), (r_inv, n_r + c_inv)), shape=(n, n))
    _, node_comp = connected_components(graph, directed=False)
    edge_comp = node_comp[r_inv]
    sizes = np.bincount(edge_comp)
    chosen = [cand[sizes[edge_comp] == 1]]  # a component with a single candidate pair is matched as is
    multi = np.flatnonzero(sizes > 1)
    order = np.argsort(edge_comp, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)])
    local_r, n_rows = _local_index(node_comp[:n_r])
    local_c, n_cols = _local_index(node_comp[n_r:])
    s_all = scores[cand]
    for comp in multi:
        e = order[starts[comp] : starts[comp + 1]]
        lr, lc = local_r[r_inv[e]], local_c[c_inv[e]]
        shape = (n_rows[comp], n_cols[comp])
        k = min(shape)
        # each pair is worth 1 plus a tie-break below 1/(2k): k pairs of tie-breaks sum to at most 1/2,
        # so the most pairs always win, then the largest total score
        cost = np.zeros(shape)
        cost[lr, lc] = -(1.0 + s_all[e] / (2.0 * k))
        ri, ci = linear_sum_assignment(cost)
        lookup = np.full(shape, -1, np.int64)
        lookup[lr, lc] = cand[e]
        picked = lookup[ri, ci]
        chosen.append(picked[picked >= 0])
    return np.sort(np.concatenate(chosen))


def match_pairs(scores: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of true and predicted objects on a score matrix.

    Args:
        scores: ``(n_true, n_pred)`` overlap scores in [0, 1] (e.g. ``iou_matrix(...)[0]``).
        threshold: pairs with ``score >= threshold`` may be matched; in (0, 1].

    Returns:
        ``(true_idx, pred_idx)``: indices of the matched pairs, the most pairs possible and among those
        the largest total score (as StarDist's matching).
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise BiosegError(f"scores has shape {s.shape}; expected a (n_true, n_pred) matrix")
    thr = _check_threshold(threshold)
    rows, cols = np.nonzero(s > 0)
    picked = _match_sparse(rows, cols, s[rows, cols], thr)
    return rows[picked], cols[picked]
