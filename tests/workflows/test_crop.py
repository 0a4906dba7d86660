"""bioseg crop: object-centred, grid and negative crops from large multi-channel fields."""

import csv

import numpy as np
import pytest
import tifffile
from helpers import dataset_dir, run_cli

from bioseg.io import read_image, read_mask, write_tiff
from bioseg.workflows.crop import crop_dataset, find_objects, grid_boxes, negative_boxes, object_boxes, window_sums


def field_with_discs(shape=(90, 110), centres=((20, 25), (45, 60), (70, 30), (12, 100)), radius=6):
    """A 3-channel uint16 field ``(3, Y, X)`` and its instance mask with one disc per centre."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.uint16)
    for i, (cy, cx) in enumerate(centres, start=1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = i
    rng = np.random.default_rng(0)
    image = rng.integers(0, 1000, (3, *shape)).astype(np.uint16)
    image[1] += (labels > 0).astype(np.uint16) * 3000
    return image, labels


@pytest.fixture
def field(tmp_path):
    image, labels = field_with_discs()
    write_tiff(tmp_path / "src" / "images" / "field.tif", image, axes="CYX")
    write_tiff(tmp_path / "src" / "masks" / "field.tif", labels)
    return tmp_path / "src", image, labels


def read_rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_window_sums_match_brute_force_2d_and_3d():
    rng = np.random.default_rng(1)
    a = rng.random((13, 17)) > 0.7
    ref = np.array([[a[i : i + 4, j : j + 5].sum() for j in range(13)] for i in range(10)])
    np.testing.assert_array_equal(window_sums(a, (4, 5)), ref)
    v = rng.random((7, 8, 9)) > 0.5
    sums = window_sums(v, (3, 2, 4))
    assert sums.shape == (5, 7, 6)
    assert sums[2, 5, 1] == v[2:5, 5:7, 1:5].sum()


@pytest.mark.parametrize("shape,size", [((33, 34), 10), ((17, 18, 19), (8, 5, 19))])
def test_grid_covers_every_pixel_within_the_image(shape, size):
    boxes = grid_boxes(shape, size)
    covered = np.zeros(shape, int)
    for start, stop in boxes:
        assert all(0 <= a < b <= n for a, b, n in zip(start, stop, shape, strict=True))
        covered[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))] += 1
    assert covered.min() >= 1
    sizes = [size] * len(shape) if isinstance(size, int) else size
    assert len(boxes) == np.prod([int(np.ceil(n / s)) for n, s in zip(shape, sizes, strict=True)])


def test_object_boxes_centre_each_object_and_stay_inside():
    _, labels = field_with_discs()
    boxes = dict(object_boxes(labels, 24))
    assert sorted(boxes) == [1, 2, 3, 4]
    (y0, x0), (y1, x1) = boxes[2]  # disc at (45, 60), far from the border: centred
    assert (y1 - y0, x1 - x0) == (24, 24) and (y0 + 11, x0 + 11) == (45, 60)
    (y0, x0), (y1, x1) = boxes[4]  # disc at (12, 100): centred in y, shifted inwards at the right border
    assert (y0, x0, x1) == (12 - 11, 110 - 24, 110)


def test_negative_boxes_hold_no_object_and_do_not_overlap():
    _, labels = field_with_discs()
    boxes = negative_boxes(labels, 16, 5, np.random.default_rng(0))
    assert len(boxes) == 5
    for start, stop in boxes:
        assert not labels[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))].any()
    for i, (a, _) in enumerate(boxes):
        for b, _ in boxes[i + 1 :]:
            assert any(abs(p - q) >= 16 for p, q in zip(a, b, strict=True))
    full = np.ones((20, 20), int)
    assert negative_boxes(full, 8, 3, np.random.default_rng(0)) == []


def test_binary_masks_give_connected_components():
    mask = np.zeros((10, 10), np.uint8)
    mask[1:3, 1:3] = 255
    mask[6:9, 5:9] = 255
    assert find_objects(mask).max() == 2
    ids = np.zeros((10, 10), np.uint8)
    ids[1:3, 1:3], ids[2:4, 3:5] = 1, 2  # touching objects keep their ids
    assert sorted(np.unique(find_objects(ids))) == [0, 1, 2]


def test_crop_synthetic_multichannel_field(field, tmp_path):
    src, image, labels = field
    out = tmp_path / "crops"
    result = crop_dataset(src / "images", src / "masks", out, size=24, negatives=3, seed=0)
    rows = read_rows(out / "crops.csv")
    assert result.count("object") == 4 and result.count("negative") == 3 and len(rows) == 7
    for row in rows:
        window = (slice(int(row["y0"]), int(row["y1"])), slice(int(row["x0"]), int(row["x1"])))
        crop_image = read_image(out / "images" / f"{row['name']}.tif")
        crop_mask = read_mask(out / "masks" / f"{row['name']}.tif")
        np.testing.assert_array_equal(crop_image, image[(slice(None), *window)])  # channels kept
        np.testing.assert_array_equal(crop_mask, (labels[window] > 0).astype(np.uint8))
        if row["kind"] == "negative":
            assert not crop_mask.any()
        else:
            assert crop_mask.any() and int(row["object"]) in labels[window]
    assert run_cli("check", out, "--classes", "2") == 0


def test_crop_cli_grid_and_mask_formats(field, tmp_path, capsys):
    src, _, labels = field
    assert run_cli("crop", src / "images", src / "masks", "-o", tmp_path / "grid", "--grid", "--size", "40") == 0
    assert len(list((tmp_path / "grid" / "images").iterdir())) == 3 * 3
    out = tmp_path / "centre"
    args = ("crop", src / "images" / "field.tif", src / "masks" / "field.tif", "-o", out, "--size", "30")
    assert run_cli(*args, "--mask-format", "centre") == 0
    for row in read_rows(out / "crops.csv"):
        window = (slice(int(row["y0"]), int(row["y1"])), slice(int(row["x0"]), int(row["x1"])))
        expected = labels[window] == int(row["object"])
        np.testing.assert_array_equal(tifffile.imread(out / "masks" / f"{row['name']}.tif"), expected)
    capsys.readouterr()
    assert run_cli(*args, "--mask-format", "centre") == 2  # never mixes with earlier crops
    assert "already holds files" in capsys.readouterr().err


def test_crop_reports_missing_negative_space(field, tmp_path, capsys):
    src, _, _ = field
    assert run_cli("crop", src / "images", src / "masks", "-o", tmp_path / "c", "--size", "60", "--negatives", "4") == 0
    out = capsys.readouterr().out
    assert "negative crops" in out and "of 4" in out


def test_crop_mismatched_sizes_is_one_line(tmp_path, capsys):
    write_tiff(tmp_path / "i" / "a.tif", np.zeros((20, 20), np.uint8))
    write_tiff(tmp_path / "m" / "a.tif", np.zeros((21, 20), np.uint8))
    assert run_cli("crop", tmp_path / "i", tmp_path / "m", "-o", tmp_path / "o") == 2
    assert "same size" in capsys.readouterr().err


def test_crop_real_dsb_image(tmp_path):
    root = dataset_dir("dsb2018_nuclei")
    image_path = sorted((root / "images").iterdir())[0]
    mask_path = root / "masks" / image_path.name
    labels = read_mask(mask_path)
    n_objects = len(np.unique(labels)) - 1
    out = tmp_path / "dsb"
    assert run_cli("crop", image_path, mask_path, "-o", out, "--size", "64", "--negatives", "2") == 0
    rows = read_rows(out / "crops.csv")
    objects = [r for r in rows if r["kind"] == "object"]
    assert len(objects) == n_objects
    assert sorted(int(r["object"]) for r in objects) == sorted(int(v) for v in np.unique(labels) if v)
    for r in rows:
        crop_mask = read_mask(out / "masks" / f"{r['name']}.tif")
        assert crop_mask.shape == (64, 64)
        assert crop_mask.any() == (r["kind"] == "object")
    assert read_image(out / "images" / f"{rows[0]['name']}.tif").shape == (4, 64, 64)  # RGBA kept
    assert run_cli("check", out, "--classes", "2") == 0


def test_crop_3d_multichannel_volume(tmp_path):
    zz, yy, xx = np.mgrid[:17, :40, :42]
    labels = np.zeros((17, 40, 42), np.uint16)
    for i, (cz, cy, cx) in enumerate([(5, 10, 10), (10, 25, 30), (12, 33, 8)], start=1):
        labels[(zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2 <= 9] = i
    image = np.stack([labels * 10, 100 - labels]).astype(np.uint16)  # (C, Z, Y, X)
    write_tiff(tmp_path / "v" / "images" / "vol.tif", image, axes="CZYX")
    write_tiff(tmp_path / "v" / "masks" / "vol.tif", labels, axes="ZYX")
    out = tmp_path / "crops"
    result = crop_dataset(tmp_path / "v" / "images", tmp_path / "v" / "masks", out, size=(8, 16, 16), negatives=1)
    assert result.count("object") == 3 and result.count("negative") == 1
    for row in read_rows(out / "crops.csv"):
        window = tuple(slice(int(row[f"{a}0"]), int(row[f"{a}1"])) for a in "zyx")
        crop_image = read_image(out / "images" / f"{row['name']}.tif", spatial_dims=3)
        assert crop_image.shape == (2, 8, 16, 16)
        np.testing.assert_array_equal(crop_image, image[(slice(None), *window)])
        crop_mask = read_mask(out / "masks" / f"{row['name']}.tif", spatial_dims=3)
        np.testing.assert_array_equal(crop_mask, labels[window] > 0)
