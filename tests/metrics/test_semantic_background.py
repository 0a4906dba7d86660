"""Which class the means leave out is declared: data.background_class, or none."""

import pytest
import torch

from bioseg.errors import BiosegError
from bioseg.metrics import SemanticMeter, describe_mean, scores_from_confusion

# 3 classes: class 0 (intracellular space in a membrane dataset, say) is well predicted, 1 and 2 less so
CM = torch.tensor([[90, 5, 5], [10, 30, 10], [0, 20, 30]])


def test_the_declared_background_is_left_out_of_the_means_and_none_keeps_every_class():
    per_class = scores_from_confusion(CM)
    dice = [per_class[f"dice/{i}"] for i in range(3)]
    assert scores_from_confusion(CM)["dice_mean"] == pytest.approx((dice[1] + dice[2]) / 2)
    every = scores_from_confusion(CM, background=None)
    assert every["dice_mean"] == pytest.approx(sum(dice) / 3)
    assert every["dice/0"] == per_class["dice/0"]  # per-class scores do not change
    assert scores_from_confusion(CM, background=2)["dice_mean"] == pytest.approx((dice[0] + dice[1]) / 2)
    binary = torch.tensor([[50, 10], [5, 35]])
    both = scores_from_confusion(binary, background=None)
    assert both["dice_mean"] == pytest.approx((both["dice/0"] + both["dice/1"]) / 2)
    assert scores_from_confusion(binary)["dice_mean"] == both["dice/1"]


def test_the_meter_passes_its_background_on():
    meter = SemanticMeter(3, background=None)
    meter.confusion += CM
    assert meter.compute()["dice_mean"] == scores_from_confusion(CM, background=None)["dice_mean"]


def test_a_mean_says_what_it_covers():
    names = ["intracellular", "membrane", "mitochondria", "synapse", "vesicle"]
    assert describe_mean(names) == (
        "over classes 1–4 (membrane, mitochondria, synapse, vesicle); background class 0 (intracellular) left out"
    )
    assert describe_mean(names, None).startswith("over all 5 classes 0–4 (intracellular, membrane")
    assert describe_mean(names, None).endswith("; no background class")
    assert describe_mean(names, 2).startswith("over classes 0, 1, 3, 4 (")
    assert describe_mean(["background", "foreground"]).startswith("over class 1 (foreground); background class 0")


def test_a_background_outside_the_classes_is_refused():
    with pytest.raises(BiosegError, match="background class 3 is not one of the 3 classes 0..2"):
        scores_from_confusion(CM, background=3)
