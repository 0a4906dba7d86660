"""Head freezing: a head that has learnt its task stops taking loss and gradients, so the others get them.

After each validation, a head whose metric (e.g. ``val/<head>/dice_mean``) reaches ``freeze_above`` is
frozen; a frozen head whose metric falls to ``unfreeze_below`` is unfrozen (hysteresis, so a head does not
flicker). A frozen head's output layer has ``requires_grad`` off (no gradient, so the optimiser leaves its
weights alone) and its loss is left out. The state per epoch is logged as ``frozen/<head>`` (0 or 1), so it
is in ``metrics.csv`` and on the charts, and it is saved in checkpoints so that a resumed run keeps it.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch


def head_parameters(net: torch.nn.Module, head: str) -> list[torch.nn.Parameter]:
    """The parameters of a head's own output layer (``head_convs.<head>.*`` in the UNet)."""
    prefix = f"head_convs.{head}."
    return [p for name, p in net.named_parameters() if name.startswith(prefix)]


def set_frozen(net: torch.nn.Module, head: str, frozen: bool) -> None:
    for p in head_parameters(net, head):
        p.requires_grad_(not frozen)
        if frozen:
            p.grad = None  # a stale gradient must not reach the optimiser


class HeadFreezing(L.Callback):
    def __init__(self, metric: str = "dice_mean", freeze_above: float = 0.95, unfreeze_below: float = 0.9) -> None:
        if unfreeze_below > freeze_above:
            raise ValueError("unfreeze_below must not exceed freeze_above")
        self.metric, self.freeze_above, self.unfreeze_below = metric, freeze_above, unfreeze_below
        self.events: list[dict[str, Any]] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # not on_validation_epoch_end: Lightning runs callbacks' hook before the module's, which logs
        # this epoch's metrics, so the decision would use the previous epoch's values
        if trainer.sanity_checking:
            return
        heads = list(pl_module.cfg.heads)
        for head in heads:
            value = trainer.callback_metrics.get(f"val/{head}/{self.metric}")
            if value is None:
                continue
            value = float(value)
            frozen = head in pl_module.frozen_heads
            if not frozen and value >= self.freeze_above and len(pl_module.frozen_heads) < len(heads) - 1:
                self._set(pl_module, head, True, trainer.current_epoch, value)
            elif frozen and value <= self.unfreeze_below:
                self._set(pl_module, head, False, trainer.current_epoch, value)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for head in pl_module.cfg.heads:  # re-applied each epoch: also after a resume
            set_frozen(pl_module.net, head, head in pl_module.frozen_heads)
            pl_module.log(f"frozen/{head}", float(head in pl_module.frozen_heads), on_epoch=True, on_step=False)

    def _set(self, pl_module: L.LightningModule, head: str, frozen: bool, epoch: int, value: float) -> None:
        (pl_module.frozen_heads.add if frozen else pl_module.frozen_heads.discard)(head)
        set_frozen(pl_module.net, head, frozen)
        self.events.append({"epoch": epoch, "head": head, "frozen": frozen, self.metric: value})

    def state_dict(self) -> dict[str, Any]:
        return {"events": self.events}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.events = list(state_dict.get("events", []))
