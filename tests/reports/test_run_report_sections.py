"""Each section of report.html reads its run-folder files, and says what is missing instead of failing."""

import json
import math

import numpy as np

from bioseg.io import write_png
from bioseg.reports import run_report_sections as parts

NAN = math.nan


def test_best_epoch_follows_the_monitor_and_its_mode_and_falls_back_to_the_training_loss():
    history = [{"epoch": 0, "val/dice_mean": 0.5, "train/loss_epoch": 0.9},
               {"epoch": 1, "val/dice_mean": 0.7, "train/loss_epoch": 0.4},
               {"epoch": 2, "val/dice_mean": NAN, "train/loss_epoch": 0.6}]  # fmt: skip
    assert parts.best_epoch(history, "val/dice_mean", "max") == (history[1], "val/dice_mean")
    assert parts.best_epoch(history, "val/dice_mean", "min")[0] is history[0]
    no_val = [{k: v for k, v in r.items() if k != "val/dice_mean"} for r in history]
    assert parts.best_epoch(no_val, "val/dice_mean", "max") == (no_val[1], "train/loss_epoch")
    assert parts.best_epoch([], "val/dice_mean", "max") == (None, "val/dice_mean")


def test_freezing_lists_each_change_of_a_heads_state_once():
    history = [{"epoch": e, "frozen/a": a, "frozen/b": 0.0} for e, a in enumerate([0.0, 1.0, 1.0, 0.0, NAN])]
    section = parts.freezing(history)
    rows = section.body.split("<tbody>")[1]
    assert rows.count("<tr>") == 2
    assert "frozen" in rows and "unfrozen" in rows and ">b<" not in rows
    assert parts.freezing([{"epoch": 0, "loss": 1.0}]) is None  # no head freezing configured


def _evaluated(tmp_path, dice):
    folder = tmp_path / "predictions" / "test"
    folder.mkdir(parents=True)
    doc = {"n_images": len(dice), "precision": "fp32", "means": "over class 1",
           "dataset": {"dice/background": 0.9, "dice/cell": 0.6, "iou/background": 0.8, "iou/cell": 0.4,
                       "dice_mean": 0.6, "iou_mean": 0.4}}  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(doc))
    lines = ["image,dice_mean"] + [f"img_{k},{d}" for k, d in enumerate(dice)]
    (folder / "per_image.csv").write_text("\n".join(lines) + "\n")
    for k in range(len(dice)):
        write_png(folder / f"img_{k}_overlay.png", np.full((4, 4, 3), k, np.uint8))
    return folder


def test_scores_have_one_row_per_class_and_the_mean_and_one_per_image(tmp_path):
    _evaluated(tmp_path, [0.3, 0.9])
    body = parts.scores(tmp_path).body
    assert 'id="classes-test"' in body and 'id="images-test"' in body
    classes = body.split('id="classes-test"')[1].split("</table>")[0]
    assert classes.count("<tr>") == 1 + 3  # header, background, cell, mean
    images = body.split('id="images-test"')[1].split("</table>")[0]
    assert images.count("<tr>") == 1 + 2


def test_worst_shows_the_lowest_dice_first_with_its_overlay(tmp_path):
    _evaluated(tmp_path, [0.8, 0.2, 0.5, 0.9])
    body = parts.worst(tmp_path, n=2).body
    assert body.count("<img") == 2
    assert body.index("img_1: Dice 0.2000") < body.index("img_2: Dice 0.5000")
    assert "img_0" not in body and "img_3" not in body


def test_a_run_not_evaluated_says_so(tmp_path):
    assert "not evaluated yet" in parts.scores(tmp_path).body
    assert "no per-image scores" in parts.worst(tmp_path).body
    assert parts.instances(tmp_path) is None
    assert "no charts" in parts.curves(tmp_path).body
    assert "missing" in parts.configuration(tmp_path).body


def test_the_test_split_comes_first(tmp_path):
    for split in ("val", "test", "train"):
        (tmp_path / "predictions" / split).mkdir(parents=True)
        (tmp_path / "predictions" / split / "metrics.json").write_text("{}")
    assert [p.name for p in parts.evaluated_splits(tmp_path)] == ["test", "train", "val"]
