import sys
from pathlib import Path
from unittest.mock import patch

import pytest

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"

# Tiny, fast training settings for end-to-end tests (a few steps of a 2-level UNet).
TINY = [
    "train.epochs=1",
    "data.patch_size=[32,32]",
    "infer.patch_size=[32,32]",
    "data.batch_size=4",
    "data.patches_per_epoch=8",
    "model.widths=[4,8]",
    "train.snapshots=1",
]


def dataset_dir(name: str) -> Path:
    path = DATASETS / name
    if not path.is_dir():
        pytest.skip(f"real dataset {path} is absent (it ships beside the repository, not in it)")
    return path


def run_cli(*args) -> int:
    """Run the ``bioseg`` entry point in-process; returns its exit code."""
    from bioseg.cli import main

    with patch.object(sys, "argv", ["bioseg", *map(str, args)]):
        try:
            main()
        except SystemExit as exit_:
            return int(exit_.code or 0)
    return 0


@pytest.fixture(scope="session")
def cells_dir(tmp_path_factory) -> Path:
    """Ten synthetic 64×64 cell images with 0/1 masks, split 1 fold (test 20%)."""
    from bioseg.data.layouts import discover
    from bioseg.data.splits import make_splits
    from bioseg.demos.cells2d import write_cells_dataset

    root = write_cells_dataset(tmp_path_factory.mktemp("cells") / "data", 10, size=(64, 64), seed=0)
    make_splits(discover(root), folds=1, test_split=0.2, val_split=0.2, seed=0)
    return root
