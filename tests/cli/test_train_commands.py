"""train through the command line: the run folder, refusing to overwrite, resuming, config typos."""

import csv
import json

import torch
import yaml
from helpers import TINY, run_cli


def test_train_writes_a_complete_run_folder(trained):
    _, run = trained
    for part in (
        "config.yaml",
        "model/weights.safetensors",
        "model/model.json",
        "checkpoints/last.ckpt",
        "metrics.csv",
        "charts/loss.png",
        "charts/dice.png",
    ):
        assert (run / part).is_file(), part
    assert list((run / "charts" / "snapshots").glob("*.png"))
    meta = json.loads((run / "model" / "model.json").read_text())
    assert meta["classes"] == ["background", "foreground"] and meta["model"]["in_channels"] == 1
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and "val/dice_mean" in rows[0]
    # last.ckpt is the latest epoch (what --resume continues from), whichever epoch was best
    assert torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] == 1


def test_training_again_without_resume_is_refused(trained, capsys):
    cfg, _ = trained
    sets = [x for s in TINY for x in ("--set", s)]
    assert run_cli("train", cfg, "--no-progress", *sets) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and len(err.strip().splitlines()) == 1


def test_resume_continues_and_keeps_history(trained):
    cfg, run = trained
    sets = [x for s in TINY for x in ("--set", s)]
    assert run_cli("train", cfg, "--no-progress", "--resume", *sets, "--set", "train.epochs=3") == 0
    lines = (run / "metrics.csv").read_text().splitlines()
    epochs = [float(line.split(",")[0]) for line in lines[1:]]
    assert epochs == [0.0, 1.0, 2.0]


def test_config_typo_is_one_line(trained, tmp_path, capsys):
    cfg, _ = trained
    raw = yaml.safe_load(cfg.read_text())
    raw["train"]["epoch"] = 3
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(raw))
    assert run_cli("train", tmp_path / "typo.yaml") == 2
    err = capsys.readouterr().err.strip()
    assert (
        "unknown key 'train.epoch'" in err and "Did you mean 'epochs'?" in err and len(err.splitlines()) == 1
    )


def test_training_without_a_terminal_says_each_epoch_and_what_the_best_score_means(trained, capsys):
    """Output captured (no terminal): a line per epoch; with val_every 2 the epochs not validated have
    empty validation cells in metrics.csv rather than the last validation's values."""
    cfg, run = trained
    sets = [x for s in TINY for x in ("--set", s)]
    capsys.readouterr()
    assert run_cli("train", cfg, *sets, "--set", "name=every2", "--set", "train.epochs=3",
                   "--set", "train.val_every=2") == 0  # fmt: skip
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("bioseg: epoch ")]
    assert [line.split()[2] for line in lines] == ["1/3", "2/3", "3/3"], err
    assert all(" step " in line and " loss " in line for line in lines)
    assert "ETA" in lines[0] and "ETA" not in lines[2]
    assert "val loss" in lines[1] and "val/dice_mean" in lines[1] and "Dice mask" in lines[1]
    assert "val" not in lines[0].replace("val_every", "") and "val" not in lines[2]
    rows = list(csv.DictReader((run.parents[1] / "every2" / "fold_0" / "metrics.csv").open()))
    assert [bool(r["val/dice_mean"]) for r in rows] == [False, True, False]
    assert [bool(r["val/loss"]) for r in rows] == [False, True, False]
    assert all(r["train/loss"] for r in rows)
    best = next(line for line in out.splitlines() if line.startswith("best "))
    assert best.startswith("best val/dice_mean ") and " at epoch 2: Dice of head mask, over class 1" in best
    assert "background class 0 (background) left out" in best
