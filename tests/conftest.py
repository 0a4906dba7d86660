"""Fixtures shared by the tests (helpers.py holds the shared functions and settings)."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cells_dir(tmp_path_factory) -> Path:
    """Ten synthetic 64×64 cell images with 0/1 masks, split 1 fold (test 20%)."""
    from bioseg.data.layouts import discover
    from bioseg.data.splits import make_splits
    from bioseg.demos.cells2d import write_cells_dataset

    root = write_cells_dataset(tmp_path_factory.mktemp("cells") / "data", 10, size=(64, 64), seed=0)
    make_splits(discover(root), folds=1, test_split=0.2, val_split=0.2, seed=0)
    return root


@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> Path:
    """Four synthetic 8×32×32 membrane volumes with instance masks, split 1 fold."""
    from bioseg.data.layouts import discover
    from bioseg.data.splits import make_splits
    from bioseg.demos.cells3d import write_cells_3d_dataset

    root = write_cells_3d_dataset(tmp_path_factory.mktemp("vol") / "data", 4, shape=(8, 32, 32), seed=0)
    make_splits(discover(root), folds=1, test_split=0.25, val_split=0.34, seed=0)
    return root

