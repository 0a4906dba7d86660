"""Region adjacency graph of a superpixel image and the merges done on it, 2D and 3D alike.

- :func:`region_graph`: edges between touching labels, weighted by the boundary probability along their
  contact surface, built with whole-array comparisons (no Python loop over voxels).
- :func:`average_agglomeration`: average-linkage merging (as in GASP): the pair with the lowest mean
  boundary probability merges while that mean is below a threshold.
- :func:`gaec`: greedy additive edge contraction, the usual fast approximation of a multicut.
- :func:`size_filter`: objects below a minimum size merge into their neighbour with the most contact.

The merge functions return ``mapping``: an array of length ``n_nodes + 1`` that sends each label to its
new label (``mapping[0] == 0``); apply it with ``mapping[labels]``.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from bioseg.errors import BiosegError


@dataclass(frozen=True)
class RegionGraph:
    """Undirected graph of touching labels.

    ``edges``: ``(E, 2)`` int64, ``u < v``, sorted; ``prob_sum``: ``(E,)`` sum of the boundary
    probability over the contact (one value per touching voxel pair: the larger of the two voxels);
    ``count``: ``(E,)`` number of touching voxel pairs; ``n_nodes``: labels are 1..n_nodes.
    """

    n_nodes: int
    edges: np.ndarray
    prob_sum: np.ndarray
    count: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        """Mean boundary probability per edge, ``(E,)``."""
        return self.prob_sum / np.maximum(self.count, 1)


def region_graph(labels: np.ndarray, prob: np.ndarray) -> RegionGraph:
    """Edges between face-adjacent voxels of different non-zero labels, with the boundary probability
    along each contact.

    ``labels``: ``(*spatial)`` int, 0 = background (no edges); ``prob``: ``(*spatial)`` float. Each pair
    of face neighbours (a, b) with labels la ≠ lb contributes ``max(prob[a], prob[b])`` to the edge
    (min(la, lb), max(la, lb)): a watershed line runs along the ridge of the boundary map, so one voxel
    of each pair lies on the ridge, and the larger value is the ridge's even when the boundary is one
    voxel thin (the mean of the two would halve it). Pairs are gathered per axis by comparing the array
    with itself shifted by one, then summed per edge with ``np.unique`` + ``np.bincount``.
    """
    labels = np.asarray(labels)
    prob = np.asarray(prob)
    if labels.shape != prob.shape:
        raise BiosegError(f"labels {labels.shape} and prob {prob.shape} must have the same shape")
    n_nodes = int(labels.max()) if labels.size else 0
    keys, values = [], []
    for axis in range(labels.ndim):
        first = [slice(None)] * labels.ndim
        second = [slice(None)] * labels.ndim
        first[axis], second[axis] = slice(None, -1), slice(1, None)
        a, b = labels[tuple(first)], labels[tuple(second)]
        contact = a != b
        contact &= a != 0
        contact &= b != 0
        la = a[contact].astype(np.int64)
        lb = b[contact].astype(np.int64)
        pair_prob = np.maximum(prob[tuple(first)][contact], prob[tuple(second)][contact]).astype(np.float64)
        keys.append(np.minimum(la, lb) * (n_nodes + 1) + np.maximum(la, lb))
        values.append(pair_prob)
    if not keys or sum(k.size for k in keys) == 0:
        empty = np.zeros(0, np.int64)
        return RegionGraph(n_nodes, np.zeros((0, 2), np.int64), np.zeros(0), empty)
    unique, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    prob_sum = np.bincount(inverse, weights=np.concatenate(values), minlength=unique.size)
    count = np.bincount(inverse, minlength=unique.size).astype(np.int64)
    edges = np.stack([unique // (n_nodes + 1), unique % (n_nodes + 1)], axis=1)
    return RegionGraph(n_nodes, edges, prob_sum, count)


def _roots(parent: list[int]) -> np.ndarray:
    """Final representative of every node of a merge forest (``parent[v] == v`` for roots)."""
    mapping = np.asarray(parent, dtype=np.int64)
    while True:
        nxt = mapping[mapping]
        if np.array_equal(nxt, mapping):
            return mapping
        mapping = nxt


def average_agglomeration(graph: RegionGraph, threshold: float) -> np.ndarray:
    """Average-linkage agglomeration: merge the two regions whose contact has the lowest mean boundary
    probability, as long as that mean is below ``threshold``.

    When A and B merge, the edge to each neighbour C becomes the mean over all contact voxels of A and B
    with C (sums and counts add), so the weight of an edge is always the true mean over its whole
    contact. Heap with lazy invalidation; the smaller adjacency is folded into the larger. Returns the
    mapping node → representative node (``(n_nodes + 1,)``, int64).
    """
    n = graph.n_nodes
    adjacency: list[dict[int, tuple[float, int]]] = [{} for _ in range(n + 1)]
    heap = []
    for (u, v), s, c in zip(graph.edges.tolist(), graph.prob_sum.tolist(), graph.count.tolist(), strict=True):
        adjacency[u][v] = adjacency[v][u] = (s, c)
        heap.append((s / c, u, v))
    heapq.heapify(heap)
    parent = list(range(n + 1))
    while heap:
        weight, u, v = heapq.heappop(heap)
        if weight >= threshold:
            break
        edge = adjacency[u].get(v)
        if edge is None or edge[0] / edge[1] != weight:
            continue  # stale: an endpoint was merged away or the edge changed since it was pushed
        if len(adjacency[u]) < len(adjacency[v]):
            u, v = v, u
        del adjacency[u][v], adjacency[v][u]
        for x, (s, c) in adjacency[v].items():
            del adjacency[x][v]
            old = adjacency[u].get(x)
            if old is not None:
                s, c = s + old[0], c + old[1]
            adjacency[u][x] = adjacency[x][u] = (s, c)
            heapq.heappush(heap, (s / c, min(u, x), max(u, x)))
        adjacency[v] = {}
        parent[v] = u
    return _roots(parent)


def multicut_costs(graph: RegionGraph, beta: float = 0.5, weight_by_size: bool = True) -> np.ndarray:
    """Edge costs ``log((1 - p) / p) + log((1 - beta) / beta)`` from the mean boundary probability p,
    times the contact size when ``weight_by_size``. Positive = the regions attract (merge), negative =
    they repel; a larger ``beta`` favours cutting (more objects). p is clipped to [1e-6, 1 - 1e-6]."""
    if not 0.0 < beta < 1.0:
        raise BiosegError(f"beta must lie strictly between 0 and 1, got {beta}; 0.5 is neutral")
    p = np.clip(graph.mean, 1e-6, 1 - 1e-6)
    costs = np.log((1 - p) / p) + math.log((1 - beta) / beta)
    if weight_by_size:
        costs *= graph.count
    return costs


def gaec(graph: RegionGraph, costs: np.ndarray) -> np.ndarray:
    """Greedy additive edge contraction: contract the edge with the largest cost while it is positive;
    the edges of the merged node to a common neighbour add their costs. Returns the mapping
    node → representative node (``(n_nodes + 1,)``, int64)."""
    n = graph.n_nodes
    costs = np.asarray(costs, dtype=np.float64)
    if costs.shape != (len(graph.edges),):
        raise BiosegError(f"gaec needs one cost per edge ({len(graph.edges)}), got shape {costs.shape}")
    adjacency: list[dict[int, float]] = [{} for _ in range(n + 1)]
    heap = []
    for (u, v), cost in zip(graph.edges.tolist(), costs.tolist(), strict=True):
        adjacency[u][v] = adjacency[v][u] = cost
        heap.append((-cost, u, v))
    heapq.heapify(heap)
    parent = list(range(n + 1))
    while heap:
        neg, u, v = heapq.heappop(heap)
        if -neg <= 0:
            break
        if adjacency[u].get(v) != -neg:
            continue  # stale
        if len(adjacency[u]) < len(adjacency[v]):
            u, v = v, u
        del adjacency[u][v], adjacency[v][u]
        for x, cost in adjacency[v].items():
            del adjacency[x][v]
            cost += adjacency[u].get(x, 0.0)
            adjacency[u][x] = adjacency[x][u] = cost
            heapq.heappush(heap, (-cost, min(u, x), max(u, x)))
        adjacency[v] = {}
        parent[v] = u
    return _roots(parent)


def contract(graph: RegionGraph, mapping: np.ndarray) -> RegionGraph:
    """The graph between merged regions: node ``mapping[u]`` for each u, parallel edges summed,
    edges inside a region dropped, edges to 0 (removed) dropped."""
    mapping = np.asarray(mapping, dtype=np.int64)
    n = int(mapping.max()) if mapping.size else 0
    if len(graph.edges) == 0:
        return RegionGraph(n, graph.edges, graph.prob_sum, graph.count)
    a, b = mapping[graph.edges[:, 0]], mapping[graph.edges[:, 1]]
    keep = (a != b) & (a != 0) & (b != 0)
    lo, hi = np.minimum(a, b)[keep], np.maximum(a, b)[keep]
    unique, inverse = np.unique(lo * (n + 1) + hi, return_inverse=True)
    prob_sum = np.bincount(inverse, weights=graph.prob_sum[keep], minlength=unique.size)
    count = np.bincount(inverse, weights=graph.count[keep], minlength=unique.size).astype(np.int64)
    edges = np.stack([unique // (n + 1), unique % (n + 1)], axis=1)
    return RegionGraph(n, edges, prob_sum, count)


def size_filter(
    graph: RegionGraph,
    sizes: np.ndarray,
    min_size: int = 0,
    max_size: int | None = None,
    small: str = "merge",
) -> np.ndarray:
    """Mapping node → node or 0 that removes objects outside ``[min_size, max_size]`` voxels.

    ``sizes``: ``(n_nodes + 1,)`` voxel counts. ``small="merge"``: objects below ``min_size`` merge,
    smallest first, into the neighbour with which they share the most contact (ties: the lower label),
    repeatedly until every object reaches ``min_size`` or has no neighbour left, in which case it is
    removed; ``small="remove"``: they become background (0). Objects above ``max_size`` (after merging)
    become background. Node 0 is background and stays 0.
    """
    if small not in ("merge", "remove"):
        raise BiosegError(f"small objects are 'merge'd or 'remove'd, got {small!r}")
    n = graph.n_nodes
    sizes = np.asarray(sizes, dtype=np.int64).copy()
    if sizes.shape != (n + 1,):
        raise BiosegError(f"size_filter needs one size per label 0..{n}, got shape {sizes.shape}")
    parent = list(range(n + 1))
    present = sizes > 0
    present[0] = False
    if min_size > 0 and small == "merge":
        contact: list[dict[int, int]] = [{} for _ in range(n + 1)]
        for (u, v), c in zip(graph.edges.tolist(), graph.count.tolist(), strict=True):
            contact[u][v] = contact[v][u] = c
        heap = [(int(sizes[u]), u) for u in np.flatnonzero(present & (sizes < min_size)).tolist()]
        heapq.heapify(heap)
        while heap:
            size, u = heapq.heappop(heap)
            if parent[u] != u or size != sizes[u] or size >= min_size:
                continue  # stale
            if not contact[u]:
                present[u] = False  # isolated: nothing to merge into
                continue
            target = min(contact[u], key=lambda x: (-contact[u][x], x))
            del contact[u][target], contact[target][u]
            for x, c in contact[u].items():
                del contact[x][u]
                total = c + contact[target].get(x, 0)
                contact[target][x] = contact[x][target] = total
            contact[u] = {}
            parent[u] = target
            sizes[target] += sizes[u]
            present[u] = False
            if sizes[target] < min_size:
                heapq.heappush(heap, (int(sizes[target]), target))
    elif min_size > 0:
        present &= sizes >= min_size
    if max_size is not None:
        present &= sizes <= max_size
    mapping = _roots(parent)
    mapping[~present[mapping]] = 0
    return mapping


def sequential(mapping: np.ndarray) -> np.ndarray:
    """Compose ``mapping`` with a renumbering of its non-zero values to 1..N (in increasing order)."""
    mapping = np.asarray(mapping, dtype=np.int64)
    values = np.unique(mapping)
    values = values[values != 0]
    renumber = np.zeros(int(mapping.max()) + 1 if mapping.size else 1, np.int64)
    renumber[values] = np.arange(1, values.size + 1)
    return renumber[mapping]
