"""How sure a prediction is: entropy of the mean probabilities and the disagreement between views.

With several predictions of one image (ensemble members, test-time views, or both) the mean is the
prediction, and two maps say how much to trust it, both scaled to [0, 1] by the entropy of the uniform
distribution over the head's classes (2 for a binary head):

- predictive entropy ``H(mean p)``: high where the classes are close, whatever the reason — ambiguous
  pixels (a blurred border) as well as unfamiliar ones;
- mutual information ``H(mean p) - mean H(p)``: the part of that entropy that comes from the predictions
  disagreeing with each other: high where the models (or views) do not know, near zero where each is
  sure of the same answer or each is equally unsure.

:class:`RunningMean` adds the predictions one at a time: memory of one probability map and one entropy
map per head, however many predictions are averaged (no entropy map for a single prediction); the
entropy of a prediction is computed when it is first asked for (:class:`EntropyMaps`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: key prefix of the mean per-prediction entropy beside the head maps (see :class:`RunningMean`)
EXPECTED_ENTROPY = "expected_entropy:"


def entropy(probs: torch.Tensor | np.ndarray, head_type: str) -> torch.Tensor:
    """Entropy ``(*spatial)`` of ``(K, *spatial)`` probabilities, in [0, 1]: divided by ``log K``
    (a binary head's one channel is the probability of the foreground: ``log 2``)."""
    p = torch.as_tensor(probs, dtype=torch.float32)
    if head_type == "binary":
        p = torch.cat([1 - p, p])
    plogp = torch.where(p > 0, p * torch.log(p.clamp_min(1e-12)), torch.zeros_like(p))
    return (-plogp.sum(0) / math.log(p.shape[0])).clamp(0, 1)


def mutual_information(mean_entropy: np.ndarray, expected_entropy: np.ndarray) -> np.ndarray:
    """``H(mean) - mean H`` from the two entropy maps (normalised alike), never below 0."""
    return np.clip(mean_entropy - expected_entropy, 0, 1).astype(np.float32)


class RunningMean:
    """The mean of several ``{head: (K, *spatial)}`` probability predictions, added one at a time.

    ``head_types``: ``{head: "binary" | "multiclass"}``. :meth:`result` gives the mean per head and,
    when more than one prediction was added, ``EXPECTED_ENTROPY + head``: the mean of their entropies
    ``(1, *spatial)``, from which :func:`mutual_information` follows.
    """

    def __init__(self, head_types: dict[str, str]) -> None:
        self.head_types = head_types
        self.count = 0
        self.sums: dict[str, torch.Tensor] = {}
        self.entropies: dict[str, torch.Tensor] = {}

    def add(self, probs: dict[str, torch.Tensor]) -> None:
        for head, kind in self.head_types.items():
            p = probs[head].float()
            if self.count == 0:  # one prediction alone needs no entropies: taken when a second comes
                self.sums[head] = p.clone()
                continue
            if self.count == 1:
                self.entropies[head] = entropy(self.sums[head], kind)
            self.sums[head] += p
            self.entropies[head] += entropy(p, kind)
        self.count += 1

    def result(self) -> dict[str, np.ndarray]:
        if not self.count:
            raise ValueError("no prediction was added")
        out = {h: (s / self.count).cpu().numpy().astype(np.float32, copy=False) for h, s in self.sums.items()}
        if self.count > 1:
            for head, e in self.entropies.items():
                out[EXPECTED_ENTROPY + head] = (e / self.count)[None].cpu().numpy().astype(np.float32, copy=False)
        return out


class EntropyMaps(dict):
    """``{head: entropy (*spatial)}`` of probability maps, each computed when first asked for: an
    image-sized map per head that most predictions never use."""

    def __init__(self, probabilities: dict[str, np.ndarray], head_types: dict[str, str]) -> None:
        super().__init__()
        self.probabilities, self.head_types = probabilities, head_types

    def __missing__(self, head: str) -> np.ndarray:
        value = entropy(self.probabilities[head], self.head_types[head]).numpy()
        self[head] = value
        return value


def split_maps(maps: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(probabilities, expected entropies)`` from a :meth:`RunningMean.result`-shaped dict."""
    probs = {k: v for k, v in maps.items() if not k.startswith(EXPECTED_ENTROPY)}
    expected = {k.removeprefix(EXPECTED_ENTROPY): v[0] for k, v in maps.items() if k.startswith(EXPECTED_ENTROPY)}
    return probs, expected
