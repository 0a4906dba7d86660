"""``bioseg demo`` end to end on a tiny budget: the run folder, test scores and log lines it leaves."""

import json

import pytest

from bioseg.config import load
from bioseg.demos.cells import run_demo
from bioseg.errors import BiosegError

TINY = [
    "train.epochs=1",
    "train.precision=32",
    "train.snapshots=0",
    "train.animation=false",
    "data.patch_size=[32,32]",
    "data.batch_size=2",
    "data.patches_per_epoch=2",
    "infer.patch_size=[64,64]",
    "model.widths=[4,8]",
]


def test_demo_tiny_budget_writes_run_predictions_and_scores(tmp_path):
    lines: list[str] = []
    scores = run_demo(tmp_path, log=lines.append, progress=False, images=5, size=(48, 64), overrides=TINY, threads=1)

    run = tmp_path / "runs" / "demo" / "fold_0"
    assert (tmp_path / "demo.yaml").is_file() and (run / "model").is_dir() and (run / "metrics.csv").is_file()
    metrics = json.loads((run / "predictions" / "test" / "metrics.json").read_text())
    test_names = (tmp_path / "data" / "splits" / "test.txt").read_text().split()
    assert metrics["n_images"] == len(test_names) >= 1
    assert 0.0 <= scores["dice_mean"] <= 1.0 and 0.0 <= scores["iou_mean"] <= 1.0
    assert [line.split(" ", 1)[0] for line in lines[:5]] == ["1/6", "2/6", "3/6", "4/6", "5/6"]
    assert "6/6 evaluating" in lines[4] and "1 thread (config:" in lines[3]
    assert "test Dice" in lines[-1] and str(run) in lines[-1]
    cfg = load(run / "config.yaml")
    assert cfg.train.epochs == 1 and cfg.optim.lr == 0.003  # the demo's settings, the tiny ones after them
    with pytest.raises(BiosegError, match="already holds a demo run"):
        run_demo(tmp_path, log=lines.append, progress=False, images=5)


def test_demo_needs_three_images(tmp_path):
    with pytest.raises(BiosegError, match="at least 3"):
        run_demo(tmp_path, progress=False, images=2)
    assert not (tmp_path / "data").exists()


def test_the_demos_leave_the_precision_to_auto():
    """bf16 pinned in a demo would be emulated, twice as slow as fp32, on CPUs without native bf16."""
    from bioseg.demos.cells import DEMO_OVERRIDES
    from bioseg.demos.multitask import DEMO_MT_TRAIN
    from bioseg.demos.volumes import DEMO3D_OVERRIDES

    pinned = [o for o in [*DEMO_OVERRIDES, *DEMO3D_OVERRIDES] if "precision" in o and not o.endswith("=auto")]
    assert pinned == [] and DEMO_MT_TRAIN["precision"] == "auto"
