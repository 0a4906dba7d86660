"""The tiny trained run the command-line tests share (per test module: they change it)."""

from pathlib import Path

import pytest
from helpers import TINY, run_cli


@pytest.fixture(scope="module")
def trained(cells_dir: Path, tmp_path_factory) -> tuple[Path, Path]:
    """A config from init-config and one tiny trained run: (config path, run folder)."""
    work = tmp_path_factory.mktemp("work")
    cfg = work / "exp.yaml"
    assert run_cli("init-config", cells_dir, "-o", cfg, "--name", "tiny") == 0
    sets = [x for s in TINY for x in ("--set", s)]
    assert run_cli("train", cfg, "--no-progress", *sets, "--set", "train.epochs=2") == 0
    return cfg, work / "runs" / "tiny" / "fold_0"


@pytest.fixture(scope="module")
def trained_folds(tmp_path_factory) -> tuple[Path, Path]:
    """Eight synthetic cell images split into 2 folds (test 25%), both folds trained tiny with
    ``--fold all``: (config path, experiment folder runs/folds/)."""
    from bioseg.data.layouts import discover
    from bioseg.data.splits import make_splits
    from bioseg.demos.cells2d import write_cells_dataset

    work = tmp_path_factory.mktemp("folds")
    root = write_cells_dataset(work / "data", 8, size=(48, 48), seed=3)
    make_splits(discover(root), folds=2, test_split=0.25, seed=0)
    cfg = work / "exp.yaml"
    assert run_cli("init-config", root, "-o", cfg, "--name", "folds") == 0
    sets = [x for s in TINY for x in ("--set", s)]
    assert run_cli("train", cfg, "--no-progress", *sets, "--fold", "all") == 0
    return cfg, work / "runs" / "folds"
