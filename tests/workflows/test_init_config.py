"""init-config on instance masks: two heads, anisotropic pooling and the post-processing tuned on real data."""

import numpy as np
import pytest

from bioseg.demos.cells3d import write_cells_3d_dataset
from bioseg.io import write_png, write_tiff
from bioseg.workflows.init_config import infer_config


def test_volumes_get_boundary_heads_and_lengths_in_voxels(tmp_path):
    root = write_cells_3d_dataset(tmp_path / "vol", 2, shape=(8, 32, 32), seed=0, anisotropy=2.0)
    cfg = infer_config(root)
    assert cfg["data"]["labels"] == "instance" and set(cfg["heads"]) == {"foreground", "boundaries"}
    assert cfg["data"]["voxel_size"] == pytest.approx([2.0, 1.0, 1.0])
    assert cfg["model"]["pool_sizes"][0] == [1, 2, 2]  # z twice as coarse: not pooled first
    post = cfg["post"]["instances"]
    assert post["mode"] == "boundary" and post["h"] == 1.0  # one in-plane voxel, with or without a voxel size
    assert (post["threshold"], post["merge_threshold"]) == (0.3, 0.3)
    assert cfg["heads"]["boundaries"]["weight_map"]["sigma"] == pytest.approx(3.0)


def test_2d_instance_masks_get_the_2d_post_processing(tmp_path):
    root = tmp_path / "nuclei"
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        ids = np.kron(np.arange(1, 17).reshape(4, 4), np.ones((16, 16), np.uint16))  # 16 square nuclei
        ids[np.arange(64) % 16 >= 12] = 0
        ids[:, np.arange(64) % 16 >= 12] = 0
        image = (ids > 0) * 180 + rng.integers(0, 40, ids.shape)
        write_png(root / "images" / f"n{i}.png", image.astype(np.uint8))
        write_tiff(root / "masks" / f"n{i}.tif", ids)
    cfg = infer_config(root)
    post = cfg["post"]["instances"]
    assert cfg["data"]["labels"] == "instance" and cfg["model"]["spatial_dims"] == 2
    assert (post["threshold"], post["merge_threshold"], post["h"]) == (0.5, 0.7, 1.0)
