"""The multi-task demo end to end on a drastically reduced budget, and the helpers it reports with."""

import json
import math

import numpy as np
import pytest
import tifffile

from bioseg.data.layouts import discover
from bioseg.data.validate import check_dataset
from bioseg.demos.multitask import (
    DEMO_MT_HEADS,
    best_values,
    cldice_on_split,
    freezing_events,
    run_demo_multitask,
)
from bioseg.errors import BiosegError

TINY_DEMO = [
    "data.batch_size=2",
    "data.patches_per_epoch=2",
    "train.snapshots=1",
    "model.widths=[4,8,8]",
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_mt")
    lines: list[str] = []
    scores = run_demo_multitask(
        out, log=lines.append, progress=False, images=6, epochs=2, size=(56, 64), resize=64, overrides=TINY_DEMO
    )
    return out, scores, "\n".join(lines)


def test_demo_writes_the_run_folder_animation_and_per_head_scores(demo):
    import imageio.v3 as iio

    out, scores, text = demo
    run = out / "runs" / "demo_multitask" / "fold_0"
    gif = run / "charts" / "training.gif"
    assert (run / "model" / "weights.safetensors").is_file() and (run / "metrics.csv").is_file()
    assert (out / "demo_multitask.yaml").is_file()
    assert iio.imread(gif, index=None).shape[0] == 2  # one frame per epoch
    assert str(run) in text and str(gif) in text
    heads = list(DEMO_MT_HEADS)
    for head in heads:
        assert 0.0 <= scores[f"dice_{head}"] <= 1.0
        assert 0.0 <= scores[f"val_dice_{head}"] <= 1.0
        assert f"    {head} " in text  # one summary line per head
    assert 0.0 <= scores["cldice_veins"] <= 1.0 and "clDice" in text
    assert scores["train_s"] > 0 and scores["total_s"] >= scores["train_s"]

    metrics = json.loads((run / "predictions" / "test" / "metrics.json").read_text())
    assert set(metrics["heads"]) == set(heads) and metrics["n_images"] == 1
    assert len(metrics["heads"]["domains"]["dataset"]) == 3 + 2 * 5  # dice, iou per class; means; accuracy
    # predictions come back at the generated image's size, not the training square
    labels = tifffile.imread(run / "predictions" / "test" / "wing_005_veins_labels.tif")
    assert labels.shape == (56, 64)
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {f"frozen/{h}" for h in heads} <= set(header) and "val/veins/cldice" in header


def test_demo_refuses_a_folder_with_a_run_and_bad_budgets(demo, tmp_path):
    out, _, _ = demo
    with pytest.raises(BiosegError, match="already holds a demo run"):
        run_demo_multitask(out, log=lambda _: None, progress=False, images=6, epochs=1, size=(56, 64), resize=64)
    with pytest.raises(BiosegError, match="at least 3"):
        run_demo_multitask(tmp_path, log=lambda _: None, images=2)
    with pytest.raises(BiosegError, match="at most resize"):
        run_demo_multitask(tmp_path, log=lambda _: None, size=(300, 200), resize=256)
    with pytest.raises(BiosegError, match="not a multiple of 32"):
        run_demo_multitask(tmp_path, log=lambda _: None, size=(90, 100), resize=100)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()  # refused before any work


def test_freezing_events_follow_the_frozen_columns():
    rows = [
        {"epoch": 0.0, "frozen/a": 0.0, "frozen/b": 0.0},
        {"epoch": 1.0, "frozen/a": 1.0, "frozen/b": 0.0},
        {"epoch": 2.0, "frozen/a": 1.0, "frozen/b": math.nan},  # not logged: no change
        {"epoch": 3.0, "frozen/a": 0.0, "frozen/b": 1.0},
    ]
    assert freezing_events(rows, ["a", "b"]) == [
        {"head": "a", "epoch": 1, "frozen": True},
        {"head": "a", "epoch": 3, "frozen": False},
        {"head": "b", "epoch": 3, "frozen": True},
    ]
    assert freezing_events([{"epoch": 0.0, "frozen/a": 0.0}] * 3, ["a"]) == []


def test_best_values_skips_missing_epochs():
    rows = [{"epoch": 0.0, "m": 0.2}, {"epoch": 1.0, "m": math.nan}, {"epoch": 2.0, "m": 0.7}, {"epoch": 3.0}]
    assert best_values(rows, "m") == (0.7, 2)
    value, epoch = best_values(rows, "absent")
    assert math.isnan(value) and epoch is None


def test_the_dataset_check_finds_bad_head_mask_values_and_sizes(tmp_path):
    from bioseg.demos.wings import write_wing_dataset

    root = write_wing_dataset(tmp_path / "data", 3, size=(40, 48), seed=1, split=(1 / 3, 1 / 3, 1 / 3))
    assert check_dataset(discover(root), heads=DEMO_MT_HEADS).problems == []
    spots = root / "train" / "masks" / "spots" / "wing_000_seg_spots.tif"
    tifffile.imwrite(spots, np.full((40, 48), 3, np.uint8))
    veins = root / "val" / "masks" / "veins" / "wing_001_seg_veins.tif"
    tifffile.imwrite(veins, np.zeros((40, 40), np.uint8))
    problems = check_dataset(discover(root), heads=DEMO_MT_HEADS).problems
    assert len(problems) == 2
    value = next(p for p in problems if "spots" in p)
    assert "values {3}" in value and "2 classes" in value and "40×40" in next(p for p in problems if "veins" in p)


def test_cldice_on_split_is_one_for_the_truth_itself(tmp_path):
    from bioseg.demos.wings import write_wing_dataset

    root = write_wing_dataset(tmp_path / "data", 3, size=(64, 64), seed=2, split=(1 / 3, 1 / 3, 1 / 3))
    pred = tmp_path / "pred"
    pred.mkdir()
    truth = tifffile.imread(root / "test" / "masks" / "veins" / "wing_002_seg_veins.tif")
    tifffile.imwrite(pred / "wing_002_veins_labels.tif", truth)
    assert cldice_on_split(pred, root) == pytest.approx(1.0)
    tifffile.imwrite(pred / "wing_002_veins_labels.tif", np.zeros_like(truth))
    assert cldice_on_split(pred, root) == pytest.approx(0.0)
