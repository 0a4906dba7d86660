"""Helpers shared by the tests: tiny training settings, the real datasets, the CLI in-process."""

import sys
from pathlib import Path
from unittest.mock import patch

import numpy as np
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


# --- objects, for the instance tests --------------------------------------------------------------


def best_ious(truth, pred):
    """For each true object (1..N), the best IoU with any predicted object."""
    n_t, n_p = int(truth.max()), int(pred.max())
    pairs = truth.astype(np.int64) * (n_p + 1) + pred
    inter = np.bincount(pairs.ravel(), minlength=(n_t + 1) * (n_p + 1)).reshape(n_t + 1, n_p + 1)
    size_t, size_p = inter.sum(1), inter.sum(0)
    union = size_t[:, None] + size_p[None, :] - inter
    iou = inter[1:, 1:] / np.maximum(union[1:, 1:], 1)
    return iou.max(axis=1) if n_p else np.zeros(n_t)


def assert_sequential(labels):
    assert labels.dtype == np.int32
    values = np.unique(labels)
    assert values.min() >= 0
    nonzero = values[values > 0]
    np.testing.assert_array_equal(nonzero, np.arange(1, nonzero.size + 1))


def two_touching_discs(shape=(40, 61), r=12):
    yy, xx = np.indices(shape)
    a = (yy - 20) ** 2 + (xx - 18) ** 2 < r**2
    b = (yy - 20) ** 2 + (xx - 40) ** 2 < r**2
    truth = np.zeros(shape, np.int32)
    truth[a] = 1
    truth[b & ~a] = 2
    return truth
