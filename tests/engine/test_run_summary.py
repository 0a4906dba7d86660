"""The closing summary names the monitored metric, what it averages, and each head's score."""

import math

from helpers import INSTANCE_HEADS

from bioseg import config
from bioseg.engine.run_summary import closing_summary, monitor_meaning


def two_heads(**data):
    return config.from_dict({"data": {"root": "/d", "labels": "instance", **data}, "heads": INSTANCE_HEADS})


HISTORY = [
    {"epoch": 0.0, "val/dice_mean": 0.5, "val/foreground/dice_mean": 0.8, "val/boundaries/dice_mean": 0.2},
    {"epoch": 1.0, "val/dice_mean": 0.6718, "val/foreground/dice_mean": 0.929, "val/boundaries/dice_mean": 0.4146},
    {"epoch": 2.0, "val/dice_mean": math.nan, "val/foreground/dice_mean": math.nan},  # not validated
]


def test_the_best_of_two_heads_says_it_is_their_mean_and_gives_each():
    lines = closing_summary(two_heads(), HISTORY, "val/dice_mean", "max", 0.6718)
    assert lines[0] == (
        "best val/dice_mean 0.6718 at epoch 2: "
        "the mean over the 2 heads (foreground, boundaries) of each head's Dice mean"
    )
    assert lines[1] == "  foreground: Dice 0.9290, over class 1 (foreground); background class 0 (background) left out"
    assert lines[2].startswith("  boundaries: Dice 0.4146, over class 1 (boundary)")


def test_other_monitors_say_what_they_measure():
    cfg = two_heads()
    assert monitor_meaning(cfg, "val/loss").startswith("the validation loss")
    assert monitor_meaning(cfg, "train/loss_epoch").startswith("the training loss of the epoch")
    assert monitor_meaning(cfg, "val/foreground/dice_mean").startswith("Dice of head foreground, over class 1")
    vnc = config.from_dict({"data": {"root": "/d", "classes": list("abcde"), "background_class": None}})
    meaning = monitor_meaning(vnc, "val/dice_mean")
    assert meaning == "Dice of head mask, over all 5 classes 0–4 (a, b, c, d, e); no background class"
    assert closing_summary(vnc, [], "val/dice_mean", "max") == ["best val/dice_mean: n/a (never measured)"]
    lowest = closing_summary(cfg, [{"epoch": 0.0, "val/loss": 0.3}, {"epoch": 1.0, "val/loss": 0.2}], "val/loss", "min")
    assert lowest[0].startswith("best val/loss 0.2000 at epoch 2: the validation loss")
