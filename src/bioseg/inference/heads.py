"""From a head's logits to probabilities and labels: the same rule in validation and prediction."""

from __future__ import annotations

import torch


def activate(logits: torch.Tensor, head_type: str, channel_dim: int = 0) -> torch.Tensor:
    """Logits → probabilities: sigmoid for a binary head, softmax over classes for a multiclass one."""
    if head_type == "binary":
        return torch.sigmoid(logits.float())
    return torch.softmax(logits.float(), dim=channel_dim)


def to_labels(
    probs: torch.Tensor, head_type: str, threshold: float = 0.5, channel_dim: int = 0
) -> torch.Tensor:
    """Probabilities → class indices (int64) with the channel axis removed."""
    if head_type == "binary":
        return (probs.squeeze(channel_dim) > threshold).long()
    return probs.argmax(dim=channel_dim)
