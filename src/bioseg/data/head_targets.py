"""Per-head training targets and pixel weights from one mask, computed once per image."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from bioseg.config import Experiment, HeadConfig
from bioseg.data.targets import boundary_target, three_class_target
from bioseg.data.weight_map import unet_weight_map


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
    mask: np.ndarray | dict[str, np.ndarray | None],
    cfg: Experiment,
    spacing: tuple[float, ...] | None = None,
    with_weights: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Targets ``{head: (*spatial) int}`` and weight maps ``{head: (*spatial) float32}``.

    ``mask`` is one mask for every head, or a mask per head (None: this sample has no mask for that
    head — its target is empty and its weight map all zero, so the head learns nothing from it).
    """
    per_head = mask if isinstance(mask, dict) else {name: mask for name in cfg.heads}
    cache: dict[int, np.ndarray] = {}  # instance labels, computed once per distinct mask
    targets, weights = {}, {}
    for name, head in cfg.heads.items():
        m = per_head.get(name)
        if m is None:
            shape = next(v.shape for v in per_head.values() if v is not None)
            targets[name] = np.zeros(shape, np.uint8 if head.classes <= 255 else np.int64)
            weights[name] = np.zeros(shape, np.float32)
            continue
        needs = head.target in ("boundary", "three_class") or (with_weights and head.weight_map is not None)
        instances = None
        if needs:
            if id(m) not in cache:
                cache[id(m)] = instance_labels(m, cfg.data.labels)
            instances = cache[id(m)]
        targets[name] = head_target(m, head, cfg.data.labels, instances)
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


def background_class(cfg: Experiment, head: str) -> int | None:
    """The class of ``head`` left out of its mean scores: ``data.background_class`` for a class-mask head
    (None: every class counts), class 0 for targets made from objects (outside every object)."""
    h = cfg.heads[head]
    if h.target != "mask":
        return 0
    background = cfg.data.background_class
    return background if background is not None and background < h.classes else None


def class_names(cfg: Experiment, head: str) -> list[str]:
    """Names of a head's classes: the data's class names for a mask head, else generic ones."""
    h = cfg.heads[head]
    if h.target == "mask" and len(cfg.data.classes) == h.classes:
        return list(cfg.data.classes)
    if h.target == "three_class":
        return ["background", "interior", "boundary"]
    if h.target in ("foreground", "boundary") or (h.target == "mask" and h.classes == 2):
        return ["background", h.target if h.target != "mask" else "foreground"]
    return [f"class_{i}" for i in range(h.classes)]
