"""Helpers shared by the tests: tiny training settings, the real datasets, the CLI in-process."""

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
