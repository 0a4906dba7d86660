"""bioseg sweep: one run per value of a key, per-class test accuracy against the value."""

import csv
import json

import numpy as np
import pytest
import tifffile
import yaml
from helpers import TINY, run_cli

from bioseg.errors import BiosegError
from bioseg.io import read_mask
from bioseg.reports.sweep_charts import sweep_axis
from bioseg.workflows.sweep import class_recall, parse_sweep

KEY = "loss.0.class_weights"


@pytest.fixture(scope="module")
def swept(cells_dir, tmp_path_factory):
    """A two-value class-weight sweep of a two-class softmax head: (config path, output folder)."""
    work = tmp_path_factory.mktemp("sweep")
    cfg = work / "exp.yaml"
    doc = {
        "name": "sw",
        "data": {"root": str(cells_dir)},
        "heads": {"mask": {"type": "multiclass", "classes": 2}},
        "loss": [{"name": "ce", "class_weights": [1, 1]}, {"name": "dice", "weight": 0.5}],
    }
    cfg.write_text(yaml.safe_dump(doc))
    fixed = [x for s in TINY for x in ("--fixed", s)]
    out = work / "sweep"
    assert run_cli("sweep", cfg, "--set", f"{KEY}=[[1, 0.1], [1, 10]]", *fixed, "-o", out, "--no-progress") == 0
    return cfg, out


def test_one_run_per_value_with_the_value_applied(swept):
    cfg, _ = swept
    for i, weights in enumerate([[1, 0.1], [1, 10]]):
        run = cfg.parent / "runs" / f"sw-{KEY}-{i}" / "fold_0"
        resolved = yaml.safe_load((run / "config.yaml").read_text())
        assert resolved["heads"]["mask"]["loss"][0] == {"name": "ce", "weight": 1.0, "class_weights": weights}
        assert (run / "predictions" / "test" / "metrics.json").is_file()


def test_table_json_and_chart(swept):
    _, out = swept
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["key"] == KEY and doc["values"] == [[1, 0.1], [1, 10]]
    assert [r["x"] for r in doc["runs"]] == [0.1, 10.0]  # placed by the element that changes
    for r in doc["runs"]:
        assert 0 <= r["recall/background"] <= 1 and 0 <= r["recall/foreground"] <= 1
    with (out / "sweep.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [json.loads(r["value"]) for r in rows] == [[1, 0.1], [1, 10]]
    assert (out / "class_accuracy.png").stat().st_size > 10_000


def test_class_recall_matches_scikit_learn(swept, cells_dir):
    from sklearn.metrics import recall_score

    cfg, _ = swept
    run = cfg.parent / "runs" / f"sw-{KEY}-1" / "fold_0"
    pred, true = [], []
    for f in sorted((run / "predictions" / "test").glob("*_labels.tif")):
        pred.append(tifffile.imread(f).ravel())
        true.append(read_mask(cells_dir / "masks" / f"{f.name.removesuffix('_labels.tif')}.png").ravel())
    expected = recall_score(np.concatenate(true), np.concatenate(pred), average=None, labels=[0, 1])
    got = class_recall(run, "test")
    assert [got["recall/background"], got["recall/foreground"]] == pytest.approx(list(expected))


def test_sweep_axis():
    xs, label, log, ticks = sweep_axis([1e-4, 1e-3, 1e-2], "optim.lr")
    assert xs == [1e-4, 1e-3, 1e-2] and log and ticks is None and label == "optim.lr"
    xs, label, log, _ = sweep_axis([[1, 0.01], [1, 1], [1, 100]], KEY)
    assert xs == [0.01, 1.0, 100.0] and label == f"{KEY}[1]" and log
    assert sweep_axis([1, 2, 3])[2] is False  # less than a decade and a half: linear
    xs, _, log, ticks = sweep_axis(["adam", "sgd"], "optim.name")
    assert xs == [0.0, 1.0] and not log and ticks == ['"adam"', '"sgd"']
    assert sweep_axis([[1, 2], [3, 4]])[3] == ["[1, 2]", "[3, 4]"]  # two elements change: by index


def test_parse_sweep():
    assert parse_sweep("optim.lr=[1e-3, 0.01]") == ("optim.lr", [1e-3, 0.01])
    for bad in ("optim.lr=0.1", "optim.lr", "=[1]", "optim.lr=[]"):
        with pytest.raises(BiosegError, match="list"):
            parse_sweep(bad)


def test_bad_values_fail_before_any_training(swept, capsys):
    cfg, _ = swept
    assert run_cli("sweep", cfg, "--set", "optim.lr=[0.1, -1]", "-o", cfg.parent / "bad") == 2
    assert "optim.lr=-1" in capsys.readouterr().err
    assert run_cli("sweep", cfg, "--set", f"{KEY}=[[1, 1], [1, -2]]", "-o", cfg.parent / "bad") == 2
    assert "class_weights" in capsys.readouterr().err
    assert not list((cfg.parent / "runs").glob("sw-optim.lr-*"))


def test_loss_key_without_a_top_level_loss_is_explained(cells_dir, tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(yaml.safe_dump({"name": "x", "data": {"root": str(cells_dir)}}))
    assert run_cli("sweep", cfg, "--set", f"{KEY}=[[1, 1], [1, 2]]") == 2
    assert "heads.mask.loss.0.class_weights" in capsys.readouterr().err
