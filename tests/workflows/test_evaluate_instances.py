"""3D instance training, evaluation of objects, the instances command on saved maps, and tune-instances."""

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from helpers import TINY_3D, instance_config, run_cli

import bioseg
from bioseg.errors import BiosegError
from bioseg.workflows.tune_instances import tune_run


def test_3d_instance_training_predicts_and_scores_objects(volumes, tmp_path, capsys):
    result = bioseg.train(instance_config(volumes, tmp_path), overrides=TINY_3D, progress=False)
    assert {"val/foreground/dice/foreground", "val/boundaries/dice/boundary"} <= set(result.history[-1])
    evaluation = bioseg.evaluate(result.run_dir, split="test", progress=False)
    out = evaluation.out_dir
    table = json.loads((out / "metrics_instances.json").read_text())["table"]
    assert [round(r["threshold"], 1) for r in table] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert (out / "f1_vs_iou.png").is_file() and set(evaluation.heads) == {"foreground", "boundaries"}
    stem = Path(evaluation.per_image[0]["image"]).name
    objects = tifffile.imread(out / f"{stem}_instances.tif")
    assert objects.shape == (8, 32, 32) and objects.dtype == np.int32
    prob = tifffile.imread(out / f"{stem}_boundaries_prob.tif")
    assert prob.shape == (1, 8, 32, 32)
    # the same objects again from the saved probability map, through the command line
    assert run_cli("instances", out / f"{stem}_boundaries_prob.tif", "-o", tmp_path / "again", "--h", "1") == 0
    assert tifffile.imread(tmp_path / "again" / f"{stem}_boundaries_instances.tif").shape == (8, 32, 32)
    # post-processing tuned on the validation volume and written into the run: predict then uses it
    capsys.readouterr()
    tune = ("tune-instances", result.run_dir, "--split", "val", "--apply", "--precision", "fp32", "--no-progress")
    assert run_cli(*tune) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 82 and sum("<- chosen" in line for line in printed) == 1
    tuning = json.loads((result.run_dir / "instances_tuning.json").read_text())
    assert set(tuning["chosen"]) == {"threshold", "h", "sigma_seeds", "merge_threshold"} and len(tuning["tried"]) == 81
    assert tuning["precision"] == "fp32"  # --precision reached the predictor
    assert max(r["f1"] for r in tuning["tried"]) == next(
        r["f1"] for r in tuning["tried"] if all(r[k] == v for k, v in tuning["chosen"].items())
    )
    used = bioseg.Predictor.from_run(result.run_dir).cfg.post.instances
    assert {k: getattr(used, k) for k in tuning["chosen"]} == tuning["chosen"]
    meta = json.loads((result.run_dir / "model" / "model.json").read_text())
    assert meta["post"] == meta["experiment"]["post"]  # the summary beside the experiment follows it
    with pytest.raises(BiosegError, match="split 'nope'"):
        tune_run(result.run_dir, split="nope", progress=False)
    # a grid from the command line: only the named parameters, at the values given
    capsys.readouterr()
    grid = ("--grid", "h=1,3", "--grid", "threshold=0.6")
    assert run_cli("tune-instances", result.run_dir, *grid, "--precision", "fp32", "--no-progress") == 0
    tuning = json.loads((result.run_dir / "instances_tuning.json").read_text())
    assert [(r["h"], r["threshold"]) for r in tuning["tried"]] == [(1, 0.6), (3, 0.6)]
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert run_cli("tune-instances", result.run_dir, "--grid", "h=-1", "--no-progress") == 2
    assert "--grid h=-1" in capsys.readouterr().err
