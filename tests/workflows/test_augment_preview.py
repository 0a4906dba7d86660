"""bioseg augment-preview: a grid of augmented training patches with their masks outlined."""

import imageio.v3 as iio
import numpy as np
import pytest
import yaml
from helpers import run_cli

from bioseg.reports.augment_preview import GAP, grid_shape, tile_grid
from bioseg.reports.charts import CLASS_COLOURS
from bioseg.workflows.augment_preview import augment_preview


def write_config(path, root, augment):
    doc = {
        "name": "preview",
        "data": {"root": str(root), "patch_size": [24, 24], "foreground_fraction": 1.0},
        "augment": augment,
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def tiles(grid, n, rows, cols, th, tw):
    out = []
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = GAP + r * (th + GAP), GAP + c * (tw + GAP)
        out.append(grid[y : y + th, x : x + tw])
    return out


def test_grid_shape_and_tile_layout():
    assert grid_shape(16) == (4, 4) and grid_shape(5) == (2, 3) and grid_shape(7, cols=7) == (1, 7)
    images = np.zeros((5, 1, 8, 9), np.float32)
    images[:, 0, 2:6, 3:7] = 1.0
    labels = (images[:, 0] > 0).astype(int)
    grid = tile_grid(images, labels, scale=4)
    assert grid.shape == (2 * (32 + GAP) + GAP, 3 * (36 + GAP) + GAP, 3)
    first = tiles(grid, 5, 2, 3, 32, 36)[0]
    red = np.all(first == CLASS_COLOURS[0], axis=-1)
    assert red[8:24, 12:28].any() and not red[:8].any()  # the outline lies on the object's edge
    assert not red[12:20, 16:24].any()  # the inside is tinted, not outlined
    assert np.all(first[0, 0] == 0)  # background keeps the image's (black) display value
    assert np.all(grid[:GAP] == 255)  # white gaps


def test_preview_cli_writes_n_tiles(cells_dir, tmp_path, capsys):
    cfg = write_config(tmp_path / "exp.yaml", cells_dir, [{"name": "rotate", "p": 1.0}, {"name": "gaussian_noise"}])
    out = tmp_path / "grid.png"
    assert run_cli("augment-preview", cfg, "-n", "7", "-o", out) == 0
    assert "7 augmented patches" in capsys.readouterr().out
    grid = iio.imread(out)
    rows, cols = grid_shape(7)
    tile = 24 * 6  # 24-pixel patches are enlarged to at least 128 pixels: 6 times
    assert grid.shape == (rows * (tile + GAP) + GAP, cols * (tile + GAP) + GAP, 3)
    last_row = grid[GAP + (rows - 1) * (tile + GAP) :, :]
    assert np.all(last_row[:, GAP + 1 * (tile + GAP) :] == 255)  # 7 tiles: the 8th and 9th places stay empty


@pytest.mark.parametrize("transform", [{"name": "rot90", "p": 1.0}, {"name": "flip", "p": 1.0}])
def test_images_and_masks_move_together(cells_dir, tmp_path, transform):
    plain = augment_preview(write_config(tmp_path / "a.yaml", cells_dir, []), 6, tmp_path / "a.png")
    moved = augment_preview(write_config(tmp_path / "b.yaml", cells_dir, [transform]), 6, tmp_path / "b.png")
    th, tw = plain.tile
    before = tiles(iio.imread(plain.path), 6, plain.rows, plain.cols, th, tw)
    after = tiles(iio.imread(moved.path), 6, moved.rows, moved.cols, th, tw)
    changed = 0
    for a, b in zip(before, after, strict=True):
        candidates = [np.rot90(a, k) for k in range(4)] + [a[::-1], a[:, ::-1], a[::-1, ::-1]]
        # the same patch, rotated or flipped as a whole: image, tint and outline together
        assert any(np.array_equal(b, c) for c in candidates)
        changed += not np.array_equal(a, b)
    assert changed > 0


def test_unknown_head_is_one_line(cells_dir, tmp_path, capsys):
    cfg = write_config(tmp_path / "exp.yaml", cells_dir, [])
    assert run_cli("augment-preview", cfg, "--head", "nope", "-o", tmp_path / "g.png") == 2
    assert "head 'nope'" in capsys.readouterr().err
