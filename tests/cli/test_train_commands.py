"""train through the command line: the run folder, refusing to overwrite, resuming, config typos."""

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
