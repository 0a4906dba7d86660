"""Per-head training targets and pixel weights from one mask, computed once per image."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from bioseg.config import Experiment, HeadConfig
from bioseg.data.targets import boundary_target, three_class_target, unet_weight_map


def instance_labels(mask: np.ndarray, labels_kind: str) -> np.ndarray:
    """Instance ids: as stored for instance masks; connected components of the foreground otherwise."""
    if labels_kind == "instance":
        return mask
    return ndimage.label(mask > 0)[0]


def head_target(mask: np.ndarray, head: HeadConfig, labels_kind: str, instances: np.ndarray | None) -> np.ndarray:
    """The class indices ``(*spatial)`` one head learns (uint8 unless the classes need more)."""
    if head.target == "mask":
        target = (mask > 0) if labels_kind == "instance" else mask
    elif head.target == "foreground":
        target = mask > 0
    elif head.target == "boundary":
        b = head.boundary
        target = boundary_target(instances, connectivity=b.connectivity, mode=b.mode, width=b.width)
    else:  # three_class: background, interior, boundary
        b = head.boundary
        target = three_class_target(instances, connectivity=b.connectivity, width=b.width)
    return target.astype(np.uint8 if head.classes <= 255 else np.int64, copy=False)


def make_head_targets(
    mask: np.ndarray, cfg: Experiment, spacing: tuple[float, ...] | None = None, with_weights: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Targets ``{head: (*spatial) int}`` and weight maps ``{head: (*spatial) float32}`` (heads with one)."""
    needs_instances = any(
        h.target in ("boundary", "three_class") or (with_weights and h.weight_map is not None)
        for h in cfg.heads.values()
    )
    instances = instance_labels(mask, cfg.data.labels) if needs_instances else None
    targets, weights = {}, {}
    for name, head in cfg.heads.items():
        targets[name] = head_target(mask, head, cfg.data.labels, instances)
        if with_weights and head.weight_map is not None:
            w = head.weight_map
            weights[name] = unet_weight_map(
                instances,
                w0=w.w0,
                sigma=w.sigma,
                class_balance=w.class_balance,
                class_mask=targets[name] > 0,
                edge_mask=(targets[name] > 0) if w.edges_only else None,
                spacing=spacing,
            ).astype(np.float32, copy=False)
    return targets, weights
