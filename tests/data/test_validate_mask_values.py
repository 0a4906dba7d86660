"""check_dataset on masks whose raw values mislead: warnings, shares, the threshold, the hint."""

import numpy as np
from helpers import anti_aliased_disc

from bioseg.data.layouts import discover
from bioseg.data.validate import check_dataset
from bioseg.io import write_png


def _dataset(root, masks):
    for i, mask in enumerate(masks):
        image = (np.asarray(mask) > 0) * 80 + np.indices(np.shape(mask))[1] + 20 + i
        write_png(root / "images" / f"m{i}.png", image.astype(np.uint8))
        write_png(root / "masks" / f"m{i}.png", np.asarray(mask, np.uint8))
    return discover(root)


def test_anti_aliased_masks_warn_and_a_mapping_points_to_the_threshold(tmp_path):
    disc = anti_aliased_disc()
    index = _dataset(tmp_path, [disc, (disc > 127).astype(np.uint8)])
    report = check_dataset(index)
    assert report.ok and len(report.warnings) == 1 and "anti-aliased" in report.warnings[0]
    text = report.format()
    assert "mask values (raw, share of pixels): 0 " in text and "no problems found (but read the warnings" in text
    mapped = check_dataset(index, num_classes=2, mask_values={0: 0, 1: 1, 255: 1})
    assert not mapped.ok and "data.mask_threshold: 0.5 instead" in mapped.problems[0]
    assert mapped.warnings == []  # a mapping was chosen: the values are no longer a guess


def test_the_threshold_reads_every_file_as_0_1(tmp_path):
    disc = anti_aliased_disc()
    index = _dataset(tmp_path, [disc, (disc > 127).astype(np.uint8), np.zeros_like(disc)])
    report = check_dataset(index, num_classes=2, mask_threshold=0.5)
    assert report.ok and report.warnings == [] and report.summary["mask_values"] == [0, 1]
    assert "after data.mask_threshold 0.5" in report.format()


def test_a_palette_warns_with_every_value_and_its_share(tmp_path):
    palette = np.array([0, 85, 170, 255], np.uint8)
    index = _dataset(tmp_path, [palette[np.indices((33, 34))[1] // 9]] * 2)
    report = check_dataset(index)
    assert "palette" in report.warnings[0]
    assert report.mask_advice.classes == ["value_0", "value_85", "value_170", "value_255"]
    line = next(ln for ln in report.format().splitlines() if ln.startswith("mask values"))
    assert all(f"{v} " in line for v in (0, 85, 170, 255)) and line.count("%") == 4
