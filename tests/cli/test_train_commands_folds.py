"""train --fold all: every fold of the split in turn; finished folds kept, interrupted ones continued."""

import shutil

from helpers import TINY, run_cli


def test_fold_all_trains_every_fold(trained_folds):
    _, experiment = trained_folds
    assert sorted(p.name for p in experiment.iterdir() if p.name.startswith("fold_")) == ["fold_0", "fold_1"]
    for k in (0, 1):
        assert (experiment / f"fold_{k}" / "model" / "model.json").is_file()
    val = [(experiment / f"fold_{k}" / "config.yaml").read_text() for k in (0, 1)]
    assert "fold: 0" in val[0] and "fold: 1" in val[1]


def test_fold_all_again_keeps_finished_folds_and_continues_an_interrupted_one(trained_folds, capsys):
    cfg, experiment = trained_folds
    shutil.rmtree(experiment / "fold_1" / "model")  # stopped after its checkpoint, before the model
    capsys.readouterr()
    sets = [x for s in TINY for x in ("--set", s)]
    assert run_cli("train", cfg, "--no-progress", *sets, "--fold", "all") == 0
    out = capsys.readouterr().out
    assert "fold 0: finished before, kept as it is" in out
    assert "fold 1: resumed" in out
    assert (experiment / "fold_1" / "model" / "model.json").is_file()


def test_a_fold_that_is_no_number_is_refused(trained_folds, capsys):
    cfg, _ = trained_folds
    assert run_cli("train", cfg, "--fold", "first") == 2
    assert "'all'" in capsys.readouterr().err
