"""bioseg compare: finished runs side by side on one test split, and --train to make them first."""

import csv
import json
import shutil

import numpy as np
import pytest
import yaml
from helpers import TINY, run_cli

from bioseg.config import parse_overrides
from bioseg.data.layouts import discover
from bioseg.data.splits import make_splits
from bioseg.reports.comparison_charts import summarise
from bioseg.workflows.compare import compare_runs


def tiny_yaml(path, root, name, **extra):
    """A config with the TINY training settings written into it."""
    doc = {"name": name, "output_dir": "runs", "data": {"root": str(root)}}
    for section, values in parse_overrides(TINY).items():
        doc.setdefault(section, {}).update(values)
    for key, value in extra.items():
        doc.setdefault(key.split(".")[0], {})[key.split(".")[1]] = value
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def compared(cells_dir, tmp_path_factory):
    """Two tiny experiments trained and compared with 'compare --train': (work folder, output folder)."""
    work = tmp_path_factory.mktemp("compare")
    a = tiny_yaml(work / "a.yaml", cells_dir, "narrow")
    b = tiny_yaml(work / "b.yaml", cells_dir, "wide", **{"model.widths": [6, 12]})
    out = work / "out"
    assert run_cli("compare", "--train", a, b, "-o", out, "--no-progress") == 0
    return work, out


def read_csv(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_train_then_compare_writes_table_and_charts(compared):
    work, out = compared
    rows = read_csv(out / "comparison.csv")
    assert [r["experiment"] for r in rows] == ["narrow", "wide"]
    for r in rows:
        metrics = json.loads((work / "runs" / r["experiment"] / "fold_0" / "predictions/test/metrics.json").read_text())
        assert float(r["dice_mean"]) == pytest.approx(metrics["dataset"]["dice_mean"])
        assert int(r["n_test"]) == metrics["n_images"] == 2
        assert 0 <= float(r["best_val"]) <= 1 and int(r["epochs"]) == 1
    md = (out / "comparison.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| narrow") or line.startswith("| wide")]
    assert len(table) == 4  # one line per experiment and one per run
    assert all(line.count("|") == table[0].count("|") for line in table[:2])
    for png in ("test_scores.png", "validation_curves.png"):
        assert (out / png).stat().st_size > 10_000


def test_compare_finished_runs_again_from_experiment_folders(compared, tmp_path, capsys):
    work, _ = compared
    out = tmp_path / "again"
    assert run_cli("compare", work / "runs" / "narrow", work / "runs" / "wide" / "fold_0", "-o", out) == 0
    printed = capsys.readouterr().out
    assert "narrow: Dice" in printed and "Dice is the mean over class 1 (foreground); background class 0" in printed
    rows = read_csv(out / "comparison.csv")
    assert [r["experiment"] for r in rows] == ["narrow", "wide"]


def test_missing_test_metrics_are_computed(compared, tmp_path):
    work, _ = compared
    run = tmp_path / "copy" / "narrow" / "fold_0"
    shutil.copytree(work / "runs" / "narrow" / "fold_0", run)
    expected = json.loads((run / "predictions/test/metrics.json").read_text())["dataset"]["dice_mean"]
    shutil.rmtree(run / "predictions")
    result = compare_runs([run], tmp_path / "out", progress=False)
    assert (run / "predictions/test/metrics.json").is_file()
    assert result.rows[0]["dice_mean"] == pytest.approx(expected)


def test_runs_on_different_test_splits_are_refused(compared, cells_dir, tmp_path, capsys):
    work, _ = compared
    other_data = tmp_path / "data"
    shutil.copytree(cells_dir, other_data)
    shutil.rmtree(other_data / "splits")
    make_splits(discover(other_data), folds=1, test_split=0.3, val_split=0.2, seed=5)
    run = tmp_path / "runs" / "moved" / "fold_0"
    shutil.copytree(work / "runs" / "wide" / "fold_0", run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["data"]["root"] = str(other_data)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    narrow = work / "runs" / "narrow" / "fold_0"
    assert run_cli("compare", narrow, run, "-o", tmp_path / "out") == 2
    assert "another test split" in capsys.readouterr().err
    assert run_cli("compare", narrow, run, "-o", tmp_path / "out", "--any-split") == 0


def test_summary_is_mean_and_sample_std_per_experiment():
    rows = [
        {"experiment": "a", "fold": 0, "dice_mean": 0.5},
        {"experiment": "b", "fold": 0, "dice_mean": 0.9},
        {"experiment": "a", "fold": 1, "dice_mean": 0.7},
        {"experiment": "a", "fold": 2, "dice_mean": 0.6},
    ]
    summary = summarise(rows, ["dice_mean"])
    assert [s["experiment"] for s in summary] == ["a", "b"]
    assert summary[0]["n"] == 3 and summary[0]["folds"] == "0 1 2"
    assert summary[0]["dice_mean_mean"] == pytest.approx(0.6)
    assert summary[0]["dice_mean_std"] == pytest.approx(np.std([0.5, 0.7, 0.6], ddof=1))
    assert summary[1]["dice_mean_std"] == 0.0


def test_train_refuses_configs_with_one_name(cells_dir, tmp_path, capsys):
    a = tiny_yaml(tmp_path / "a.yaml", cells_dir, "same")
    b = tiny_yaml(tmp_path / "b.yaml", cells_dir, "same")
    assert run_cli("compare", "--train", a, b, "-o", tmp_path / "out") == 2
    assert "named 'same'" in capsys.readouterr().err
