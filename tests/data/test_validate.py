"""Dataset check: every problem of a broken dataset is listed at once, each naming its file."""

from pathlib import Path

import numpy as np
import pytest
import tifffile
from helpers import DATASETS

from bioseg.data.layouts import discover
from bioseg.data.validate import CheckReport, check_dataset
from bioseg.io import write_png, write_tiff

ISBI = DATASETS / "isbi2012_em"
RNG = np.random.default_rng(0)


def _image(shape=(17, 18)) -> np.ndarray:
    return RNG.integers(0, 255, shape, dtype=np.uint8)


def _mask(shape=(17, 18), values=(0, 1)) -> np.ndarray:
    mask = np.full(shape, values[0], np.uint8)
    mask[: shape[0] // 2] = values[1]
    return mask


def _clean(root: Path, n: int = 3) -> None:
    for i in range(n):
        write_png(root / "images" / f"{i}.png", _image())
        write_png(root / "masks" / f"{i}.png", _mask())


def test_clean_dataset_is_ok_and_summarised(tmp_path):
    write_png(tmp_path / "images" / "a.png", _image((17, 18)))
    write_tiff(tmp_path / "images" / "b.tif", _image((33, 34)))
    masks = {"a": _mask((17, 18), (0, 1)), "b": np.zeros((33, 34), np.uint8)}
    masks["b"][:3, :3] = 2
    write_png(tmp_path / "masks" / "a.png", masks["a"])
    write_tiff(tmp_path / "masks" / "b.tif", masks["b"])
    report = check_dataset(discover(tmp_path), num_classes=3)
    assert isinstance(report, CheckReport)
    assert report.ok and report.problems == []
    s = report.summary
    assert s["samples"] == 2 and s["with_mask"] == 2
    assert s["image_sizes"] == {"min": [17, 18], "max": [33, 34], "set": [(17, 18), (33, 34)]}
    assert s["channels"] == {1: 2} and s["dtypes"] == {"uint8": 2}
    assert s["mask_values"] == [0, 1, 2]
    assert s["class_presence"] == {"a": [0, 1], "b": [0, 2]}
    # frequencies against a direct count over all mask pixels
    all_pixels = np.concatenate([m.ravel() for m in masks.values()])
    expected = {c: float(np.mean(all_pixels == c)) for c in (0, 1, 2)}
    assert s["class_frequencies"] == pytest.approx(expected)
    assert sum(s["class_pixels"].values()) == all_pixels.size
    text = report.format()
    assert "2 samples" in text and "no problems found" in text


def test_every_problem_is_reported_together(tmp_path):
    _clean(tmp_path, 2)  # 0 and 1 are fine
    write_png(tmp_path / "images" / "7.png", _image())
    write_png(tmp_path / "masks" / "7.png", _mask(values=(0, 255)))  # 0/255 mask
    write_png(tmp_path / "images" / "rgbmask.png", _image())
    colour = np.zeros((17, 18, 3), np.uint8)
    colour[:4] = (255, 0, 0)
    write_png(tmp_path / "masks" / "rgbmask.png", colour)  # true colour mask
    (tmp_path / "images" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    write_png(tmp_path / "masks" / "corrupt.png", _mask())
    write_png(tmp_path / "images" / "big.png", _image((17, 19)))
    write_png(tmp_path / "masks" / "big.png", _mask())  # size mismatch
    write_png(tmp_path / "images" / "flat.png", np.full((17, 18), 12, np.uint8))  # constant
    write_png(tmp_path / "masks" / "flat.png", _mask())
    nan_image = RNG.normal(size=(17, 18)).astype(np.float32)
    nan_image[2, 3] = np.nan
    nan_image[4, 5] = np.inf
    write_tiff(tmp_path / "images" / "nan.tif", nan_image)
    write_png(tmp_path / "masks" / "nan.png", _mask())
    write_png(tmp_path / "images" / "colour.png", RNG.integers(0, 255, (17, 18, 3), dtype=np.uint8))
    write_png(tmp_path / "masks" / "colour.png", _mask())  # 3 channels among 1-channel images
    write_png(tmp_path / "images" / "nomask.png", _image())
    (tmp_path / "masks" / "empty.png").write_bytes(b"")
    write_png(tmp_path / "images" / "empty.png", _image())

    report = check_dataset(discover(tmp_path), num_classes=3)
    assert not report.ok
    problems = report.problems
    text = "\n".join(problems)

    def one(prefix: str) -> str:
        found = [p for p in problems if p.startswith(prefix)]
        assert len(found) == 1, (prefix, problems)
        return found[0]

    assert one("images/nomask.png has no mask")
    # the suggestion maps every value found in the dataset (0, 1 and 255) onto 0..2
    assert (
        one("masks/7.png")
        == "masks/7.png has values {0, 255}; a mask must hold class indices 0..2: add data.mask_values: "
        "{0: 0, 1: 1, 255: 2}"
    )
    assert "is an RGB image with 2 colours; a mask must be single-channel" in one("masks/rgbmask.png")
    assert "cannot be read as a PNG" in one("images/corrupt.png")
    assert "is 17×18 but its image images/big.png is 17×19" in one("masks/big.png")
    assert "constant (every pixel is 12)" in one("images/flat.png")
    assert "holds 1 NaN and 1 infinite values" in one("images/nan.tif")
    assert "has 3 channels but" in one("images/colour.png") and "have 1" in one("images/colour.png")
    assert "is empty" in one("masks/empty.png")
    assert len(problems) == 9
    # the clean samples are not mentioned; the formatted report lists every problem, one per line
    assert "images/0.png" not in text and "masks/1.png" not in text
    formatted = report.format().splitlines()
    assert "9 problems:" in formatted
    for p in problems:
        assert f"- {p}" in formatted


def test_binary_0_255_masks_get_the_mapping(tmp_path):
    for name in ("6", "7"):
        write_png(tmp_path / "images" / f"{name}.png", _image())
        write_png(tmp_path / "masks" / f"{name}.png", _mask(values=(0, 255)))
    report = check_dataset(discover(tmp_path), num_classes=2)
    assert report.problems == [
        f"masks/{name}.png has values {{0, 255}}; a mask must hold class indices 0..1: "
        "add data.mask_values: {0: 0, 255: 1}"
        for name in ("6", "7")
    ]
    # the suggested mapping, once applied, makes the dataset pass
    mapping = report.summary["suggested_mask_values"]
    assert check_dataset(discover(tmp_path), num_classes=2, mask_values=mapping).ok


def test_without_classes_only_structure_is_checked(tmp_path):
    write_png(tmp_path / "images" / "a.png", _image())
    write_png(tmp_path / "masks" / "a.png", _mask(values=(0, 255)))
    write_png(tmp_path / "images" / "b.png", _image())
    write_png(tmp_path / "masks" / "b.png", _mask(values=(0, 128)))
    report = check_dataset(discover(tmp_path))
    assert report.ok
    assert report.summary["mask_values"] == [0, 128, 255]
    assert report.summary["suggested_mask_values"] == {0: 0, 128: 1, 255: 2}
    assert report.summary["class_presence"] == {"a": [0, 255], "b": [0, 128]}


def test_mask_values_mapping(tmp_path):
    write_png(tmp_path / "images" / "a.png", _image())
    write_png(tmp_path / "masks" / "a.png", _mask(values=(0, 255)))
    write_png(tmp_path / "images" / "b.png", _image())
    write_png(tmp_path / "masks" / "b.png", _mask(values=(0, 128)))
    index = discover(tmp_path)
    good = check_dataset(index, num_classes=3, mask_values={0: 0, 128: 2, 255: 1})
    assert good.ok
    assert good.summary["class_presence"] == {"a": [0, 1], "b": [0, 2]}
    bad = check_dataset(index, num_classes=2, mask_values={0: 0, 255: 1})
    assert bad.problems == [
        "masks/b.png has values {0, 128}; {128} is not in data.mask_values {0: 0, 255: 1}: add it "
        "(data.mask_values: {0: 0, 128: ?, 255: 1}) or fix the mask"
    ]
    wrong_target = check_dataset(index, num_classes=2, mask_values={0: 0, 128: 1, 255: 2})
    assert wrong_target.problems == [
        "data.mask_values maps 255 to class 2, but there are 2 classes (0..1): map the values onto 0..1 "
        "or add classes"
    ]


def test_too_many_values_for_the_classes(tmp_path):
    write_png(tmp_path / "images" / "a.png", _image())
    labels = np.arange(17 * 18, dtype=np.uint16).reshape(17, 18) % 5
    write_png(tmp_path / "masks" / "a.png", labels)
    report = check_dataset(discover(tmp_path), num_classes=2)
    assert len(report.problems) == 1
    assert "5 distinct values for 2 classes" in report.problems[0]


def test_jpeg_masks_get_a_hint(tmp_path):
    from PIL import Image

    write_png(tmp_path / "images" / "a.png", _image())
    (tmp_path / "masks").mkdir()
    Image.fromarray(_mask(values=(0, 255))).save(tmp_path / "masks" / "a.jpg")
    report = check_dataset(discover(tmp_path), num_classes=2)
    assert "JPEG is lossy" in report.problems[0]


def test_3d_volumes(tmp_path):
    volume = RNG.integers(0, 255, (5, 17, 18), dtype=np.uint8)
    (tmp_path / "images").mkdir()
    tifffile.imwrite(tmp_path / "images" / "v.tif", volume, imagej=True, metadata={"axes": "ZYX"})
    write_tiff(tmp_path / "masks" / "v.tif", (volume > 128).astype(np.uint8), axes="ZYX")
    flat = check_dataset(discover(tmp_path))
    assert any("3D stack of 5 planes" in p for p in flat.problems)
    deep = check_dataset(discover(tmp_path), num_classes=2, spatial_dims=3)
    assert deep.ok and deep.summary["image_sizes"]["set"] == [(5, 17, 18)]


def test_progress_bar_goes_to_stderr(tmp_path, capsys):
    _clean(tmp_path, 2)
    check_dataset(discover(tmp_path), progress=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "checking" in captured.err
    check_dataset(discover(tmp_path))
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(not ISBI.is_dir(), reason=f"real dataset not present at {ISBI}")
def test_isbi2012_real_dataset():
    index = discover(ISBI)
    assert index.layout == "pairs" and len(index.samples) == 30
    report = check_dataset(index, num_classes=2, mask_values={0: 1, 255: 0})
    assert report.ok, report.format()
    assert report.summary["samples"] == 30
    assert report.summary["image_sizes"]["set"] == [(512, 512)]
    assert report.summary["mask_values"] == [0, 255]
    # membrane (raw 0 → class 1) is the minority class
    assert 0.1 < report.summary["class_frequencies"][1] < 0.4
    unmapped = check_dataset(index, num_classes=2)
    assert len(unmapped.problems) == 30
    assert all("add data.mask_values: {0: 0, 255: 1}" in p for p in unmapped.problems)


def _multitask(root: Path, masks: dict[str, dict[str, np.ndarray]]) -> Path:
    """``root/train/images/<id>.png`` and ``root/train/masks/<head>/<id>_seg_<head>.tif`` per head."""
    for sample, by_head in masks.items():
        write_png(root / "train" / "images" / f"{sample}.png", _image())
        for head, mask in by_head.items():
            write_tiff(root / "train" / "masks" / head / f"{sample}_seg_{head}.tif", mask)
    return root


def test_multitask_head_masks_with_bad_values_or_sizes_are_each_reported(tmp_path):
    domains = np.zeros((17, 18), np.uint8)
    domains[:, 4:] = np.arange(1, 5).repeat(4)[:14]  # classes 0..4: a multiclass head
    root = _multitask(
        tmp_path,
        {
            "a": {"wing": _mask(), "spots": _mask(values=(0, 255)), "domains": domains},
            "b": {"wing": _mask(values=(0, 3)), "spots": _mask(values=(0, 255)), "domains": domains},
            "c": {"wing": _mask((17, 20)), "spots": np.zeros((17, 18), np.uint8), "domains": domains},
        },
    )
    report = check_dataset(discover(root))  # as `bioseg check DIR` runs it
    problems = report.problems
    assert len(problems) == 4, problems
    wing_b = next(p for p in problems if "b_seg_wing.tif" in p)
    assert "('wing' mask) has values {0, 3}" in wing_b and "0..1" in wing_b and "fix the mask" in wing_b
    wing_c = next(p for p in problems if "c_seg_wing.tif" in p)
    assert "17×20" in wing_c and "17×18" in wing_c
    spots = [p for p in problems if "_seg_spots.tif" in p]
    assert len(spots) == 2 and all("{0, 255}" in p and "heads.spots.mask_values: {0: 0, 255: 1}" in p for p in spots)
    assert not any("domains" in p for p in problems)  # 0..4 without a gap: five classes
    assert report.summary["head_mask_values"] == {"domains": [0, 1, 2, 3, 4], "spots": [0, 255], "wing": [0, 1, 3]}
    assert "3 samples, 3 with masks" in report.format() and "head masks: domains {0, 1, 2, 3, 4}" in report.format()

    # declared heads, as a config gives them: the spots' mapping makes 255 a class, the wing has 2 classes
    heads = {"wing": {}, "spots": {"mask_values": {0: 0, 255: 1}}, "domains": {"classes": 5}, "veins": {}}
    declared = check_dataset(discover(root), heads=heads).problems
    assert not any("_seg_spots.tif" in p for p in declared)
    assert any("b_seg_wing.tif" in p and "head 'wing' has 2 classes" in p for p in declared)
    assert any("head 'veins' has no masks" in p for p in declared)
    small = check_dataset(discover(root), heads={"domains": {"classes": 3}}).problems
    assert sum("_seg_domains.tif" in p and "has 3 classes" in p for p in small) == 3
    # one mask's classes (what training passes) leave head values to a declared mapping: only sizes
    assert len(check_dataset(discover(root), num_classes=2).problems) == 1
