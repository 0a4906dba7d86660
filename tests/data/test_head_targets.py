"""Per-head targets (foreground, boundary) from instance and semantic masks."""

from pathlib import Path

import numpy as np
from helpers import instance_config
from skimage.segmentation import find_boundaries

from bioseg import config
from bioseg.data.head_targets import make_head_targets


def test_head_targets_from_instance_labels():
    labels = np.zeros((20, 24), np.int64)
    labels[2:10, 2:12], labels[2:10, 12:20], labels[12:18, 5:15] = 1, 2, 3
    cfg = config.from_dict(instance_config(Path("/d"), Path("/o"), data={"root": "/d", "labels": "instance"}, model={}))
    targets, weights = make_head_targets(labels, cfg)
    assert np.array_equal(targets["foreground"], labels > 0)
    assert np.array_equal(targets["boundaries"], find_boundaries(labels, mode="thick"))
    assert set(weights) == {"boundaries"}
    w = weights["boundaries"]
    assert w.shape == labels.shape and w.min() > 0
    assert w[5, 12] > w[15, 10]  # where two cells touch weighs more than inside a lone cell


def test_boundary_head_on_semantic_masks_uses_connected_components():
    mask = np.zeros((12, 12), np.int64)
    mask[1:5, 1:5], mask[7:11, 7:11] = 1, 1
    cfg = config.from_dict({"data": {"root": "/d"}, "heads": {"b": {"target": "boundary"}}})
    targets, _ = make_head_targets(mask, cfg)
    assert np.array_equal(targets["b"], find_boundaries(mask, mode="thick"))


def test_means_leave_out_the_declared_background_of_mask_heads_and_class_0_of_object_targets():
    from bioseg.data.head_targets import background_class

    vnc = {"root": "/d", "classes": ["intracellular", "membrane", "mitochondria", "synapse", "vesicle"]}
    cfg = config.from_dict({"data": vnc})
    assert background_class(cfg, "mask") == 0
    cfg = config.from_dict({"data": {**vnc, "background_class": None}})
    assert background_class(cfg, "mask") is None
    heads = {"foreground": {"type": "binary", "target": "foreground"}, "mask": {"type": "multiclass", "classes": 5}}
    cfg = config.from_dict({"data": {**vnc, "labels": "semantic", "background_class": None}, "heads": heads})
    assert (background_class(cfg, "foreground"), background_class(cfg, "mask")) == (0, None)
