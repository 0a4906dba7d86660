"""Instance workflows end to end: per-head targets, 3D training, patch sets, objects, fine-tuning."""

from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli

from bioseg import config

TINY_3D = [
    "train.epochs=1",
    "model.widths=[4,8]",
    "data.patch_size=[8,16,16]",
    "infer.patch_size=[8,32,32]",
    "data.batch_size=2",
    "data.patches_per_epoch=4",
    "train.snapshots=1",
]


INSTANCE_HEADS = {
    "foreground": {"type": "binary", "target": "foreground"},
    "boundaries": {"type": "binary", "target": "boundary", "weight_map": {"w0": 5.0, "sigma": 2.0}},
}


@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> Path:
    from bioseg.data.layouts import discover
    from bioseg.data.splits import make_splits
    from bioseg.demos.cells3d import write_cells_3d_dataset

    root = write_cells_3d_dataset(tmp_path_factory.mktemp("vol") / "data", 4, shape=(8, 32, 32), seed=0)
    make_splits(discover(root), folds=1, test_split=0.25, val_split=0.34, seed=0)
    return root


def instance_config(root: Path, out: Path, **extra) -> dict:
    return {
        "name": "inst",
        "output_dir": str(out),
        "data": {"root": str(root), "labels": "instance", "patch_size": [8, 16, 16]},
        "model": {"spatial_dims": 3},
        "heads": INSTANCE_HEADS,
        "post": {"instances": {"mode": "boundary", "h": 1.0}},
        **extra,
    }


def test_patch_set_is_written_once_and_trained_on(volumes, tmp_path):
    cfg_path = tmp_path / "exp.yaml"
    config.dump(config.from_dict(instance_config(volumes, tmp_path)), cfg_path)
    sets = [x for s in TINY_3D for x in ("--set", s)]
    assert run_cli("patches", cfg_path, "-o", tmp_path / "patches", "--per-image", "3", "--no-progress", *sets) == 0
    assert len(list((tmp_path / "patches").glob("patch_*.npz"))) == 3 * 2  # two training volumes
    with np.load(tmp_path / "patches" / "patch_000000.npz") as patch:
        assert set(patch.files) == {"image", "target/foreground", "target/boundaries", "weight/boundaries"}
    sets += ["--set", f"data.patch_set={tmp_path / 'patches'}"]
    assert run_cli("train", cfg_path, "--no-progress", *sets) == 0
    # a config whose heads no longer match the stored targets is refused
    other = [*sets, "--set", "heads.boundaries.boundary.mode=inner", "--set", "name=other"]
    assert run_cli("train", cfg_path, "--no-progress", *other) == 2
