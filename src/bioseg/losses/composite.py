"""Weighted sums of loss terms: per head (:class:`HeadLoss`) and over all heads (:class:`CompositeLoss`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from pydantic import ValidationError
from torch import Tensor, nn

from bioseg.config import HeadConfig, default_loss
from bioseg.errors import BiosegError
from bioseg.losses.terms import HEAD_TYPES, build_term

__all__ = ["CompositeLoss", "HeadLoss", "build_loss"]


class HeadLoss(nn.Module):
    """``sum_i weight_i * term_i(logits, target, weight)`` for one head.

    Args:
        head_type: ``"binary"`` or ``"multiclass"``.
        terms: ``(name, weight, kwargs)`` per term,
            e.g. ``[("bce", 0.5, {"pos_weight": 2.0}), ("dice", 0.5, {})]``.
            A term used twice is logged as ``name``, ``name_2``, …
    """

    def __init__(self, head_type: str, terms: Sequence[tuple[str, float, Mapping[str, Any]]]) -> None:
        super().__init__()
        if head_type not in HEAD_TYPES:
            raise BiosegError(f"head type '{head_type}' is not one of {', '.join(HEAD_TYPES)}")
        if not terms:
            raise BiosegError(f"a {head_type} head needs at least one loss term, e.g. [bce, dice]; got none")
        self.head_type = head_type
        self.terms = nn.ModuleList()
        self.names: list[str] = []
        self.weights: list[float] = []
        for name, weight, kwargs in terms:
            if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
                raise BiosegError(f"loss '{name}' has weight {weight!r}; a term weight must be a number >= 0")
            self.terms.append(build_term(name, head_type, **dict(kwargs or {})))
            key, k = name, 2
            while key in self.names:
                key, k = f"{name}_{k}", k + 1
            self.names.append(key)
            self.weights.append(float(weight))

    def forward(
        self, logits: Tensor, target: Tensor, weight: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``logits (N, C, *spatial)``, ``target``, optional ``weight (N, 1, *spatial)`` →
        ``(total, parts)``; ``parts`` maps each term name to its unweighted value (detached, for logging)."""
        weighted: list[Tensor] = []
        parts: dict[str, Tensor] = {}
        for key, w, term in zip(self.names, self.weights, self.terms, strict=True):
            value = term(logits, target, weight)
            parts[key] = value.detach()
            weighted.append(w * value)
        return torch.stack(weighted).sum(), parts


def _head_config(name: str, cfg: Any) -> Any:
    if isinstance(cfg, Mapping):
        try:
            return HeadConfig.model_validate(dict(cfg))
        except ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise BiosegError(f"head '{name}': '{loc}': {first['msg'].removeprefix('Value error, ')}") from None
    for attr in ("type", "loss", "weight"):
        if not hasattr(cfg, attr):
            raise BiosegError(
                f"head '{name}' config {cfg!r} has no '{attr}'; pass a HeadConfig or a mapping with "
                "type, loss and weight"
            )
    return cfg


class CompositeLoss(nn.Module):
    """The training loss over every head: ``sum_h head_weight_h * HeadLoss_h``.

    Args:
        heads: head name → config with ``.type`` (binary | multiclass), ``.loss`` (objects with ``.name``,
            ``.weight``, ``.kwargs``; None: the default for the type) and ``.weight``, such as
            :class:`bioseg.config.HeadConfig`; plain mappings are validated into one.
    """

    def __init__(self, heads: Mapping[str, Any]) -> None:
        super().__init__()
        if not heads:
            raise BiosegError("the loss needs at least one head; got none")
        self.heads = nn.ModuleDict()
        self.head_weights: dict[str, float] = {}
        for name, raw in heads.items():
            if not name or "." in name:
                raise BiosegError(f"head name '{name}' must be non-empty and contain no '.'")
            cfg = _head_config(name, raw)
            terms = cfg.loss if cfg.loss is not None else default_loss(cfg.type)
            try:
                self.heads[name] = HeadLoss(cfg.type, [(t.name, t.weight, t.kwargs) for t in terms])
            except BiosegError as err:
                raise BiosegError(f"head '{name}': {err}") from None
            self.head_weights[name] = float(cfg.weight)

    def forward(
        self,
        outputs: Mapping[str, Tensor],
        targets: Mapping[str, Tensor],
        weights: Mapping[str, Tensor] | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and logs.

        Args:
            outputs: head name → logits ``(N, C, *spatial)``.
            targets: head name → target; a head absent here contributes nothing (its mask is missing).
                Keys that are not heads of this loss are ignored.
            weights: optional head name → pixel weights ``(N, 1, *spatial)``.

        Returns:
            ``(total, logs)`` with logs ``"{head}/{term}"`` (unweighted term values) and ``"{head}/total"``
            (the head's weighted sum, before the head weight); log values are detached.
        """
        weights = weights or {}
        total: Tensor | None = None
        logs: dict[str, Tensor] = {}
        for name, head_loss in self.heads.items():
            if name not in outputs:
                if name not in targets:
                    continue
                raise BiosegError(
                    f"there is a target for head '{name}' but the model outputs only "
                    f"{', '.join(sorted(outputs)) or 'nothing'}; "
                    "check the head names of the model and the data"
                )
            if name not in targets:
                # Zero times the output keeps this head's parameters in the graph (DDP expects every
                # parameter to receive a gradient) without changing the loss.
                contrib = outputs[name].float().sum() * 0.0
            else:
                head_total, parts = head_loss(outputs[name], targets[name], weights.get(name))
                for key, value in parts.items():
                    logs[f"{name}/{key}"] = value
                logs[f"{name}/total"] = head_total.detach()
                contrib = self.head_weights[name] * head_total
            total = contrib if total is None else total + contrib
        if total is None:
            device = next(iter(outputs.values())).device if outputs else None
            total = torch.zeros((), device=device)
        return total, logs


def build_loss(heads: Mapping[str, Any]) -> CompositeLoss:
    """The :class:`CompositeLoss` for ``heads`` (e.g. ``experiment.heads``)."""
    return CompositeLoss(heads)
