"""The line a training says per epoch when it shows no progress bar."""

from bioseg.engine.epoch_log import duration, epoch_line


def test_a_validated_epoch_gives_losses_the_monitored_value_and_each_head():
    metrics = {"train/loss": 0.4123, "train/loss/foreground/total": 0.3, "train/loss/boundaries/total": 0.5,
               "val/loss": 0.39, "val/dice_mean": 0.6718, "val/foreground/dice_mean": 0.929,
               "val/boundaries/dice_mean": 0.4146}  # fmt: skip
    line = epoch_line(3, 20, 96, 12.4, 211.0, metrics, ["foreground", "boundaries"], "val/dice_mean")
    assert line == (
        "epoch 3/20  step 96  12.4 s (ETA 3 min 31 s)  loss 0.412 (foreground/total 0.300, boundaries/total 0.500)"
        "  val loss 0.390  val/dice_mean 0.672  Dice foreground 0.929, boundaries 0.415"
    )


def test_an_epoch_without_validation_has_no_validation_part():
    line = epoch_line(1, 2, 8, 1.0, None, {"train/loss": 0.5, "train/loss/mask/total": 0.5}, ["mask"], "val/dice_mean")
    assert line == "epoch 1/2  step 8  1.0 s  loss 0.500"


def test_durations_read_easily():
    assert (duration(4.25), duration(211), duration(3900)) == ("4.2 s", "3 min 31 s", "1 h 05 min")
