"""Stored patch sets: written once with their targets and weight maps, then trained on."""


import numpy as np
from helpers import TINY_3D, instance_config, run_cli

from bioseg import config


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
