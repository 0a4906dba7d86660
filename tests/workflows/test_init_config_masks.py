"""init-config on masks whose raw values mislead: a palette of grey levels, files on other scales,
anti-aliased binary masks, no masks at all; and volumes without a voxel size. Each written config trains."""

import numpy as np
import pytest
import yaml
from helpers import TINY, anti_aliased_disc, run_cli

from bioseg.errors import BiosegError
from bioseg.io import write_png, write_tiff
from bioseg.workflows.init_config import infer_setup, write_config

PALETTE = [0, 32, 64, 96, 128, 160, 192, 224, 255]


def _pairs(root, masks, size=(33, 34)):
    rng = np.random.default_rng(0)
    for i, mask in enumerate(masks):
        shape = np.zeros(size) if mask is None else np.asarray(mask, np.float64)
        image = shape / max(1.0, float(shape.max())) * 120 + rng.integers(0, 60, size)
        write_png(root / "images" / f"m{i}.png", image.astype(np.uint8))
        if mask is not None:
            write_png(root / "masks" / f"m{i}.png", np.asarray(mask, np.uint8))
    return root


def _trains(cfg_path, tmp_path):
    sets = [x for s in TINY for x in ("--set", s)]
    out = ["--set", f"output_dir={tmp_path / 'runs'}", "--set", "train.epochs=1", "--set", "data.patches_per_epoch=4"]
    assert run_cli("train", cfg_path, "--no-progress", *sets, *out) == 0


def test_a_palette_gets_one_class_per_value_and_no_background(tmp_path, capsys):
    bands = (np.indices((33, 34))[1] // 4).clip(0, 8)
    masks = [np.array(PALETTE, np.uint8)[np.roll(bands, i, axis=1)] for i in range(6)]
    root = _pairs(tmp_path / "data", masks)
    inferred = infer_setup(root)
    d = inferred.config["data"]
    assert d["mask_values"] == {v: i for i, v in enumerate(PALETTE)}
    assert d["classes"] == [f"value_{v}" for v in PALETTE] and "background" not in d["classes"]
    assert any("palette" in n for n in inferred.notes)
    path = write_config(inferred.config, tmp_path / "exp.yaml", comments=inferred.comments)
    text = path.read_text()
    assert "  # one class per raw mask value" in text and yaml.safe_load(text)["data"]["mask_values"][255] == 8
    _trains(path, tmp_path)


def test_anti_aliased_masks_beside_01_files_get_a_threshold_and_train(tmp_path, capsys):
    disc = anti_aliased_disc()
    binary = [(np.roll(disc, 3 * i, axis=1) > 127).astype(np.uint8) for i in range(5)]
    root = _pairs(tmp_path / "data", [disc, np.roll(disc, 5, axis=0), *binary])
    assert run_cli("check", root) == 0
    out = capsys.readouterr().out
    assert "anti-aliased" in out and "warning" in out and "255 " in out and "%" in out
    assert run_cli("init-config", root, "-o", tmp_path / "exp.yaml") == 0
    out = capsys.readouterr().out
    assert "warning: " in out and "data.mask_threshold" in out
    text = (tmp_path / "exp.yaml").read_text()
    d = yaml.safe_load(text)["data"]
    assert d["labels"] == "semantic" and d["mask_threshold"] == pytest.approx(0.5) and d["mask_values"] is None
    assert "# anti-aliased binary masks" in text
    assert run_cli("check", root, "-c", tmp_path / "exp.yaml") == 0
    assert "after data.mask_threshold 0.5" in capsys.readouterr().out
    _trains(tmp_path / "exp.yaml", tmp_path)


def test_files_on_two_scales_warn_and_map_every_value(tmp_path):
    disc = (anti_aliased_disc() > 127).astype(np.uint8)
    root = _pairs(tmp_path / "data", [disc, disc, disc, disc * 255])
    inferred = infer_setup(root)
    assert inferred.config["data"]["mask_values"] == {0: 0, 1: 1, 255: 2}
    assert any("disagree" in n and "masks/m3.png" in n for n in inferred.notes)


def test_images_without_masks_are_refused_in_one_line(tmp_path, capsys):
    root = _pairs(tmp_path / "data", [None, None])
    with pytest.raises(BiosegError, match="no masks") as err:
        infer_setup(root)
    assert "masks/" in str(err.value) and "\n" not in str(err.value)
    assert run_cli("init-config", root, "-o", tmp_path / "exp.yaml") == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and not (tmp_path / "exp.yaml").exists()


def _volumes(root, voxel_size=None):
    rng = np.random.default_rng(0)
    for i in range(2):
        ids = np.zeros((16, 32, 32), np.uint16)
        for k in range(12):
            z, y, x = rng.integers(2, 14), rng.integers(4, 28), rng.integers(4, 28)
            ids[z - 2 : z + 2, y - 3 : y + 3, x - 3 : x + 3] = k + 1
        image = ((ids > 0) * 150 + rng.integers(0, 50, ids.shape)).astype(np.uint8)
        write_tiff(root / "images" / f"v{i}.tif", image, axes="ZYX", voxel_size=voxel_size)
        write_tiff(root / "masks" / f"v{i}.tif", ids, axes="ZYX")
    return root


def test_volumes_without_a_voxel_size_warn_and_say_how_to_set_it(tmp_path, capsys):
    root = _volumes(tmp_path / "data")
    inferred = infer_setup(root)
    assert inferred.config["data"]["voxel_size"] is None
    assert any("no voxel size" in n and "--voxel-size" in n and "data.voxel_size" in n for n in inferred.notes)
    assert run_cli("check", root) == 0
    assert "no voxel size" in capsys.readouterr().out
    given = infer_setup(root, voxel_size=(2.0, 0.5, 0.5))  # known anisotropy: z is not pooled at first
    assert given.config["data"]["voxel_size"] == [2.0, 0.5, 0.5]
    assert given.config["model"]["pool_sizes"][:2] == [[1, 2, 2], [1, 2, 2]]
    assert not any("no voxel size" in n for n in given.notes)
    assert run_cli("init-config", root, "-o", tmp_path / "exp.yaml", "--voxel-size", "2,0.5,0.5") == 0
    assert yaml.safe_load((tmp_path / "exp.yaml").read_text())["model"]["pool_sizes"][0] == [1, 2, 2]
    assert run_cli("init-config", root, "-o", tmp_path / "x.yaml", "--voxel-size", "2,0.5") == 2


def test_volumes_with_a_voxel_size_do_not_warn(tmp_path):
    inferred = infer_setup(_volumes(tmp_path / "data", voxel_size=(2.0, 1.0, 1.0)))
    assert not any("voxel size" in n for n in inferred.notes)
    assert inferred.config["model"]["pool_sizes"][0] == [1, 2, 2]
