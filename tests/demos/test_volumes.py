"""``bioseg demo --3d`` end to end on a tiny budget: the run folder, instance scores and TIFFs it leaves."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from bioseg.config import load
from bioseg.demos.volumes import run_demo_3d
from bioseg.errors import BiosegError

TINY = [
    "data.patch_size=[8,32,32]",
    "data.patches_per_epoch=2",
    "infer.patch_size=[16,48,48]",
    "train.snapshots=0",
    "train.animation=false",
    "train.precision=32",  # one step of bf16 on a 1-volume set can leave a BatchNorm variance at 0
    "infer.precision=fp32",
]


def test_demo3d_tiny_budget_writes_run_and_instances(tmp_path):
    lines: list[str] = []
    scores = run_demo_3d(tmp_path, log=lines.append, progress=False, volumes=3, epochs=1, shape=(16, 48, 48),
                         overrides=TINY, threads=1)  # fmt: skip

    run = tmp_path / "runs" / "demo3d" / "fold_0"
    assert (run / "config.yaml").is_file() and (run / "model").is_dir() and (run / "metrics.csv").is_file()
    assert (run / "charts" / "loss.png").is_file()
    test_names = (tmp_path / "data" / "splits" / "test.txt").read_text().split()
    assert test_names
    pred = run / "predictions" / "test"
    doc = json.loads((pred / "metrics_instances.json").read_text())
    rows = {round(r["threshold"], 6): r for r in doc["table"]}
    assert 0.5 in rows and {"f1", "precision", "recall", "tp", "fp", "fn"} <= set(rows[0.5])
    assert rows[0.5]["tp"] + rows[0.5]["fn"] == doc["n_true"] > 0  # every true object counted once
    assert (pred / "f1_vs_iou.png").is_file()
    for name in test_names:
        labels = tifffile.imread(pred / f"{name}_instances.tif")
        truth = tifffile.imread(tmp_path / "data" / "masks" / f"{name}.tif")
        assert labels.shape == truth.shape == (16, 48, 48)
        assert np.issubdtype(labels.dtype, np.integer) and labels.min() >= 0
    # the returned scores are the ones written to disk
    assert scores["f1_iou50"] == pytest.approx(rows[0.5]["f1"])
    assert scores["n_true"] == doc["n_true"] and scores["n_pred"] == doc["n_pred"]
    assert 0.0 <= scores["dice_foreground"] <= 1.0
    assert any("F1" in line and "IoU 0.5" in line for line in lines)
    # the demo's own settings were applied, the tiny ones after them
    cfg = load(run / "config.yaml")
    assert set(cfg.heads) == {"foreground", "boundaries"} and cfg.heads["boundaries"].weight == 2.0
    assert cfg.heads["boundaries"].target == "boundary" and cfg.heads["boundaries"].weight_map is not None
    assert cfg.post.instances.mode == "boundary" and cfg.train.precision == "32"  # TINY wins over the demo
    assert cfg.data.patch_size == [8, 32, 32] and cfg.train.epochs == 1
    with pytest.raises(BiosegError, match="already holds a demo run"):
        run_demo_3d(tmp_path, log=lines.append, progress=False, volumes=3, epochs=1)


def test_demo3d_needs_three_volumes(tmp_path):
    with pytest.raises(BiosegError, match="at least 3"):
        run_demo_3d(tmp_path, progress=False, volumes=2)
    assert not (tmp_path / "data").exists()
