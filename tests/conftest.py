"""Fixtures shared by the tests (helpers.py holds the shared functions and settings)."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def precision_cache(tmp_path_factory):
    """The precision measurement is cached in a folder of the test session, not in the user's home."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("bioseg.inference.precision.default_cache_dir", lambda: folder)
        yield folder


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


@pytest.fixture(scope="session")
def run_3d_blocks(tmp_path_factory) -> Path:
    """For block-wise prediction: a 3D run, a binary head, per-image percentile normalisation, fp32."""
    folder = tmp_path_factory.mktemp("blocks3d")
    from helpers import saved_run

    return saved_run(folder, {
        "name": "blocks3d",
        "data": {"root": str(folder / "absent"), "patch_size": [8, 32, 32], "labels": "instance"},
        "model": {"spatial_dims": 3, "widths": [4, 8], "pool_sizes": [[1, 2, 2]]},
        "infer": {"patch_size": [8, 32, 32], "precision": "fp32", "batch_size": 3},
    })  # fmt: skip



@pytest.fixture(scope="session")
def volume():
    """For block-wise prediction: a (19, 90, 77) float32 volume of smooth blobs and noise (odd sizes)."""
    import numpy as np
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    blobs = ndi.gaussian_filter(rng.random((19, 90, 77)), 2) * 400
    return (blobs + rng.normal(100, 5, blobs.shape)).astype(np.float32)
