"""The folds an experiment trains with --fold all, and which of them count as finished."""

import pytest

from bioseg import config
from bioseg.data.layouts import discover
from bioseg.data.splits import make_splits
from bioseg.demos.cells2d import write_cells_dataset
from bioseg.engine.folds import experiment_folds, is_finished
from bioseg.errors import BiosegError


def test_the_folds_of_the_split_files(tmp_path):
    root = write_cells_dataset(tmp_path / "data", 8, size=(32, 32), seed=0)
    cfg = config.from_dict({"data": {"root": str(root), "patch_size": [32, 32]}})
    with pytest.raises(BiosegError, match="bioseg split"):
        experiment_folds(cfg)
    make_splits(discover(root), folds=3, test_split=0.25, seed=0)
    assert experiment_folds(cfg) == [0, 1, 2]


def test_a_run_is_finished_when_its_model_is_written(tmp_path):
    run = tmp_path / "fold_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert not is_finished(run)
    (run / "model").mkdir()
    for name in ("model.json", "weights.safetensors"):
        (run / "model" / name).write_text("{}")
    assert is_finished(run)
