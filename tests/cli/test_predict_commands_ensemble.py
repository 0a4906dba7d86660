"""predict and evaluate an ensemble (the folds of an experiment, or runs named with --ensemble), with
test-time views and uncertainty maps."""

import json

import numpy as np
import tifffile
from helpers import run_cli


def test_predict_an_experiment_folder_averages_its_folds(trained_folds, tmp_path, capsys):
    cfg, experiment = trained_folds
    images = sorted((cfg.parent / "data" / "images").iterdir())[:2]
    out = tmp_path / "pred"
    assert run_cli("predict", experiment, *images, "-o", out, "--tta", "--uncertainty", "--no-progress") == 0
    stem = images[0].stem
    probs = tifffile.imread(out / f"{stem}_prob.tif")
    uncertainty = tifffile.imread(out / f"{stem}_uncertainty.tif")
    assert uncertainty.shape == (2, *probs.shape[-2:])  # entropy, mutual information between 2 × 8 views
    assert 0 <= uncertainty.min() and uncertainty.max() <= 1
    assert (uncertainty[1] <= uncertainty[0] + 1e-6).all()  # the disagreement is part of the entropy

    named = tmp_path / "named"
    folds = [experiment / "fold_0", "--ensemble", experiment / "fold_1"]
    assert run_cli("predict", *folds, *images, "-o", named, "--tta", "--no-progress") == 0
    np.testing.assert_allclose(tifffile.imread(named / f"{stem}_prob.tif"), probs, atol=1e-6)
    assert not (named / f"{stem}_uncertainty.tif").exists()


def test_single_model_uncertainty_is_the_entropy(trained_folds, tmp_path):
    cfg, experiment = trained_folds
    image = sorted((cfg.parent / "data" / "images").iterdir())[0]
    out = tmp_path / "one"
    assert run_cli("predict", experiment / "fold_0", image, "-o", out, "--uncertainty", "--no-progress") == 0
    assert tifffile.imread(out / f"{image.stem}_uncertainty.tif").shape == (48, 48)


def test_evaluate_an_ensemble_reports_calibration(trained_folds, capsys):
    _, experiment = trained_folds
    capsys.readouterr()
    assert run_cli("evaluate", experiment, "--tta", "--no-progress") == 0
    out = capsys.readouterr().out
    assert "ECE" in out and "AUROC" in out
    folder = experiment / "predictions" / "test"
    doc = json.loads((folder / "metrics.json").read_text())
    assert len(doc["members"]) == 2 and doc["tta"] and doc["views_per_image"] == 16
    calibration = doc["calibration"]["mask"]
    assert 0 <= calibration["ece"] <= 1 and len(calibration["reliability"]["count"]) == 15
    assert (folder / "reliability.png").is_file()


def test_an_ensemble_of_folds_is_not_scored_on_validation_images(trained_folds, capsys):
    _, experiment = trained_folds
    assert run_cli("evaluate", experiment, "--split", "val", "--no-progress") == 2
    assert "--split test" in capsys.readouterr().err


def test_tune_instances_takes_an_ensemble_of_folds_on_the_test_split_only(trained_folds, capsys):
    _, experiment = trained_folds
    assert run_cli("tune-instances", experiment, "--tta", "--no-progress") == 2  # default split: val
    assert "--split test" in capsys.readouterr().err
