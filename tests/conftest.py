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
def object_run(cells_dir: Path, tmp_path_factory) -> Path:
    """A tiny 2D run that predicts objects (post.instances foreground), trained for two epochs, evaluated on
    its test split and its object threshold tuned: every section of its report.html has content."""
    from helpers import TINY, run_cli

    from bioseg.workflows.tune_instances import tune_run

    work = tmp_path_factory.mktemp("object_run")
    cfg = work / "exp.yaml"
    assert run_cli("init-config", cells_dir, "-o", cfg, "--name", "objects") == 0
    sets = [x for s in [*TINY, "train.epochs=2", "post.instances.mode=foreground"] for x in ("--set", s)]
    assert run_cli("train", cfg, "--no-progress", *sets) == 0
    run = work / "runs" / "objects" / "fold_0"
    assert run_cli("evaluate", run, "--no-progress", "--precision", "fp32") == 0
    tune_run(run, split="val", grid={"threshold": (0.4, 0.6)}, progress=False, precision="fp32")
    return run


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium from Debian's package, driven by Playwright (which cannot download browsers here)."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is absent: apt-get install chromium (.ci/run does) to run the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    """Where browser tests save their screenshots: $BIOSEG_TEST_ARTIFACTS, else a folder of the test session."""
    import os

    folder = Path(os.environ.get("BIOSEG_TEST_ARTIFACTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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
