import math
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
from skimage.segmentation import find_boundaries

from bioseg.errors import BiosegError
from bioseg.reports.charts import (
    CLASS_COLOURS,
    overlay_rgb,
    plot_training_curves,
    save_overlay,
    save_snapshot,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = iio.imread(path)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4) and min(pixels.shape[:2]) > 50
    assert pixels.dtype == np.uint8
    assert pixels.std() > 0  # something was drawn
    return pixels


def _rows(n=5):
    return [
        {
            "epoch": e,
            "train/loss": 1.0 / (e + 1),
            "val/loss": 1.2 / (e + 1),
            "val/dice_mean": 0.5 + 0.1 * e,
            "val/mask/dice/foreground": 0.4 + 0.1 * e,
            "val/iou_mean": 0.3 + 0.1 * e,
            "val/accuracy": 0.9,
            "lr": 1e-3 * 0.5**e,
        }
        for e in range(n)
    ]


def test_all_charts_written_as_valid_pngs(tmp_path):
    paths = plot_training_curves(_rows(), tmp_path / "charts")
    assert [p.name for p in paths] == ["loss.png", "dice.png", "iou.png", "accuracy.png", "lr.png"]
    for p in paths:
        assert p.parent == tmp_path / "charts"
        _assert_png(p)


def test_missing_keys_skip_their_charts(tmp_path):
    rows = [{"epoch": e, "train/loss": 1.0 / (e + 1)} for e in range(3)]
    paths = plot_training_curves(rows, tmp_path)
    assert [p.name for p in paths] == ["loss.png"]
    assert not (tmp_path / "dice.png").exists() and not (tmp_path / "lr.png").exists()
    assert plot_training_curves([], tmp_path / "empty") == []
    assert not (tmp_path / "empty").exists()


def test_spent_epsilon_gets_its_own_chart(tmp_path):
    rows = [{"epoch": e, "train/loss": 1.0, "privacy/epsilon": 0.5 * (e + 1)} for e in range(3)]
    assert [p.name for p in plot_training_curves(rows, tmp_path)] == ["loss.png", "privacy.png"]
    _assert_png(tmp_path / "privacy.png")


def test_nan_and_missing_values_do_not_crash(tmp_path):
    rows = _rows(4)
    rows[0]["val/loss"] = math.nan
    rows[1].pop("val/iou_mean")
    rows[2]["val/iou_mean"] = math.inf
    rows[3]["val/loss"] = ""  # as read back from a CSV with an empty cell
    for row in rows:
        row["val/dice_mean"] = math.nan
        row["val/mask/dice/foreground"] = math.nan
    paths = plot_training_curves(rows, tmp_path)
    names = [p.name for p in paths]
    assert "dice.png" not in names  # every dice value is NaN: nothing to draw
    assert {"loss.png", "iou.png", "lr.png"} <= set(names)
    for p in paths:
        _assert_png(p)


def test_rows_without_epoch_use_the_row_position(tmp_path):
    rows = [{"train/loss": 0.5}, {"train/loss": 0.25}]
    (path,) = plot_training_curves(rows, tmp_path)
    _assert_png(path)


def _reference_grey(image):
    lo, hi = np.percentile(image.astype(np.float64), [1.0, 99.8])
    return np.rint(np.clip((image - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


@pytest.fixture
def scene():
    rng = np.random.default_rng(0)
    image = rng.normal(1000, 200, (33, 34)).astype(np.float32)
    labels = np.zeros((33, 34), np.int64)
    labels[5:15, 5:15] = 1
    labels[20:30, 18:30] = 2
    return image, labels


def test_overlay_keeps_background_grey_and_tints_classes(scene):
    image, labels = scene
    out = overlay_rgb(image, labels, num_classes=3)
    assert out.shape == (33, 34, 3) and out.dtype == np.uint8
    grey = _reference_grey(image)
    background = labels == 0
    for c in range(3):
        np.testing.assert_array_equal(out[..., c][background], grey[background])
    for k in (1, 2):
        region = labels == k
        assert np.all(np.any(out[region] != grey[region][:, None], axis=1))
        expected = np.rint(0.6 * grey[region][:, None] + 0.4 * CLASS_COLOURS[k - 1].astype(float))
        np.testing.assert_array_equal(out[region], expected.astype(np.uint8))
    opaque = overlay_rgb(image, labels, num_classes=3, alpha=1.0)
    assert not np.array_equal(opaque[labels == 1][0], opaque[labels == 2][0])
    np.testing.assert_array_equal(overlay_rgb(image, labels, 3, alpha=0.0), np.stack([grey] * 3, -1))


def test_colour_table_has_twenty_distinct_colours():
    assert CLASS_COLOURS.shape == (20, 3)
    assert len({tuple(c) for c in CLASS_COLOURS}) == 20


def test_outline_paints_only_region_borders(scene):
    image, labels = scene
    out = overlay_rgb(image, labels, num_classes=3, outline=True)
    border = find_boundaries(labels, mode="inner") & (labels > 0)
    grey = np.stack([_reference_grey(image)] * 3, -1)
    np.testing.assert_array_equal(out[~border], grey[~border])
    np.testing.assert_array_equal(out[border & (labels == 2)][0], CLASS_COLOURS[1])


def test_three_channels_shown_as_rgb_and_channel_order_accepted(scene):
    _, labels = scene
    rng = np.random.default_rng(1)
    rgb = rng.uniform(0, 1, (3, 33, 34))
    rgb[0] *= 3  # a bright red channel: the display must not be grey
    out = overlay_rgb(rgb, labels, num_classes=3)
    background = labels == 0
    assert not np.array_equal(out[..., 0][background], out[..., 1][background])
    np.testing.assert_array_equal(overlay_rgb(np.moveaxis(rgb, 0, -1), labels, 3), out)
    four = rng.uniform(0, 1, (4, 33, 34))
    np.testing.assert_array_equal(overlay_rgb(four, labels, 3), overlay_rgb(four[0], labels, 3))


def test_constant_and_nan_images_do_not_crash(scene):
    _, labels = scene
    flat = overlay_rgb(np.full((33, 34), 7.0), labels, 3)
    assert np.all(flat[labels == 0] == 0)
    with_nan = np.random.default_rng(0).normal(size=(33, 34))
    with_nan[0, 0] = np.nan
    assert overlay_rgb(with_nan, labels, 3).shape == (33, 34, 3)


@pytest.mark.parametrize(
    ("image_shape", "labels", "num_classes"),
    [
        ((33, 34), np.full((33, 34), 3), 3),  # value out of range
        ((33, 34), np.full((33, 34), -1), 3),
        ((20, 20), np.zeros((33, 34), int), 3),  # shape mismatch
        ((33, 34), np.full((33, 34), 0.5), 3),  # not integer
        ((33, 34), np.zeros((33, 34), int), 0),
    ],
)
def test_overlay_input_errors(image_shape, labels, num_classes):
    with pytest.raises(BiosegError):
        overlay_rgb(np.zeros(image_shape), labels, num_classes)


def test_save_overlay_round_trip(tmp_path, scene):
    image, labels = scene
    path = save_overlay(tmp_path / "sub" / "overlay.png", image, labels, 3)
    np.testing.assert_array_equal(iio.imread(path), overlay_rgb(image, labels, 3))


def test_save_snapshot_2d_and_3d(tmp_path, scene):
    image, labels = scene
    prediction = np.roll(labels, 2, axis=1)
    path = save_snapshot(tmp_path / "snap.png", image[None], labels, prediction, 3, title="sample 0")
    pixels = _assert_png(path)
    assert pixels.shape[1] > 2 * pixels.shape[0]  # three panels side by side
    volume = np.stack([image] * 5)
    truth3d = np.zeros((5, 33, 34), int)
    truth3d[3] = labels
    path3d = save_snapshot(tmp_path / "snap3d.png", volume, truth3d, truth3d, 3)
    _assert_png(path3d)
    with pytest.raises(BiosegError):
        save_snapshot(tmp_path / "bad.png", image, labels, labels[:-1], 3)


def test_charts_never_touch_pyplot(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "from bioseg.reports.charts import plot_training_curves, save_snapshot\n"
        f"plot_training_curves([{{'epoch': 0, 'train/loss': 1.0}}], {str(tmp_path)!r})\n"
        f"save_snapshot({str(tmp_path / 's.png')!r}, np.zeros((9, 9)), np.eye(9, dtype=int),"
        " np.eye(9, dtype=int), 2)\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "loss.png").exists() and (tmp_path / "s.png").exists()
