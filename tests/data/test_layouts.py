"""Dataset discovery: the pairs, xy and csv layouts, auto-detection and the problems found."""

from pathlib import Path

import numpy as np
import pytest

from bioseg.data.layouts import DatasetIndex, Sample, discover, natural_key
from bioseg.errors import BiosegError
from bioseg.io import write_png, write_tiff

IMAGE = np.arange(17 * 18, dtype=np.uint8).reshape(17, 18)
MASK = (IMAGE > 100).astype(np.uint8)


def _files(folder: Path, names: list[str], array: np.ndarray = IMAGE) -> None:
    for name in names:
        if name.endswith((".tif", ".tiff")):
            write_tiff(folder / name, array)
        else:
            write_png(folder / name, array)


def test_pairs_by_stem_with_other_extensions(tmp_path):
    _files(tmp_path / "images", ["2.png", "10.tif", "1.png"])
    _files(tmp_path / "masks", ["1.tif", "2.png", "10.png"], MASK)
    index = discover(tmp_path)
    assert isinstance(index, DatasetIndex)
    assert index.layout == "pairs" and index.root == tmp_path and index.presplit is None
    assert index.names == ["1", "2", "10"]  # numbers sort as numbers
    assert index.problems == []
    by_name = {s.name: s for s in index.samples}
    assert by_name["1"] == Sample("1", tmp_path / "images" / "1.png", tmp_path / "masks" / "1.tif")
    assert by_name["10"].image.name == "10.tif" and by_name["10"].mask.name == "10.png"


def test_pairs_lists_unpaired_files_and_ignores_the_rest(tmp_path):
    _files(tmp_path / "images", ["a.png", "b.png", "lonely.png", ".hidden.png"])
    _files(tmp_path / "masks", ["a.png", "b.png", "orphan.png", "._a.png"], MASK)
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    (tmp_path / "images" / "Thumbs.db").write_bytes(b"\x00")
    (tmp_path / "images" / "sub").mkdir()
    _files(tmp_path / "splits", ["x.png"])  # our own folder: ignored
    index = discover(tmp_path, layout="pairs")
    assert index.names == ["a", "b", "lonely"]
    assert index.sample("lonely").mask is None
    assert len(index.problems) == 2
    lonely, orphan = sorted(index.problems)
    assert lonely.startswith("images/lonely.png has no mask") and "masks/lonely" in lonely
    assert orphan.startswith("masks/orphan.png has no image")


def test_pairs_same_stem_twice_is_a_problem(tmp_path):
    _files(tmp_path / "images", ["7.png", "7.tif", "8.png"])
    _files(tmp_path / "masks", ["7.png", "8.png"], MASK)
    index = discover(tmp_path)
    assert index.names == ["8"]
    assert any("images/7.png, images/7.tif share the name '7'" in p for p in index.problems)


def test_pairs_without_masks_folder(tmp_path):
    _files(tmp_path / "images", ["a.png", "b.png"])
    index = discover(tmp_path)
    assert index.layout == "pairs"
    assert [s.mask for s in index.samples] == [None, None]
    assert len(index.problems) == 1 and "masks/ does not exist" in index.problems[0]


def test_xy_layout_with_presplit(tmp_path):
    _files(tmp_path / "train" / "x", ["training-0002.png", "training-0001.png", "training-0003.png"])
    # other names than x/: paired in sorted order, as BiaPy does
    _files(tmp_path / "train" / "y", ["label-0001.png", "label-0002.png", "label-0003.png"], MASK)
    _files(tmp_path / "val" / "x", ["v1.tif"])
    _files(tmp_path / "val" / "y", ["v1.tif"], MASK)
    _files(tmp_path / "test" / "x", ["t1.png", "t2.png"])
    _files(tmp_path / "test" / "y", ["t1.png", "t2.png"], MASK)
    index = discover(tmp_path)
    assert index.layout == "xy" and index.problems == []
    assert index.presplit == {
        "train": ["train/training-0001", "train/training-0002", "train/training-0003"],
        "val": ["val/v1"],
        "test": ["test/t1", "test/t2"],
    }
    first = index.sample("train/training-0001")
    assert first.image.name == "training-0001.png" and first.mask.name == "label-0001.png"
    assert index.sample("train/training-0003").mask.name == "label-0003.png"
    assert len(index) == 6


def test_xy_count_mismatch_is_a_problem(tmp_path):
    _files(tmp_path / "train" / "x", ["a.png", "b.png", "c.png"])
    _files(tmp_path / "train" / "y", ["a.png", "b.png"], MASK)
    index = discover(tmp_path, layout="xy")
    assert index.presplit == {"train": ["train/a", "train/b", "train/c"], "val": [], "test": []}
    assert any("train/x/ has 3 images but train/y/ has 2 masks" in p for p in index.problems)
    assert any(p.startswith("train/x/c.png has no mask") for p in index.problems)
    assert index.sample("train/a").mask.name == "a.png"


def test_csv_layout_root_is_the_file(tmp_path):
    _files(tmp_path / "imgs", ["a.png", "b.tif"])
    _files(tmp_path / "labels", ["a.png", "b.png"], MASK)
    (tmp_path / "data.csv").write_text("image,mask\nimgs/a.png,labels/a.png\nimgs/b.tif,labels/b.png\n")
    index = discover(tmp_path / "data.csv")
    assert index.layout == "csv" and index.root == tmp_path and index.problems == []
    assert index.names == ["imgs/a", "imgs/b"]
    assert index.sample("imgs/b").mask == tmp_path / "labels" / "b.png"
    # auto picks the only CSV of a folder without images/, and csv= names it explicitly
    assert discover(tmp_path).names == index.names
    assert discover(tmp_path, layout="csv", csv=tmp_path / "data.csv").names == index.names
    assert discover(tmp_path, csv="data.csv").layout == "csv"


def test_csv_problems_and_name_column(tmp_path):
    _files(tmp_path / "imgs", ["a.png", "b.png", "c.png"])
    _files(tmp_path / "labels", ["a.png"], MASK)
    (tmp_path / "list.csv").write_text(
        "name,image,mask,notes\n"
        "first,imgs/a.png,labels/a.png,ok\n"
        "second,imgs/b.png,labels/missing.png,\n"
        "third,imgs/gone.png,labels/a.png,\n"
        "first,imgs/c.png,labels/a.png,\n"
    )
    index = discover(tmp_path)
    assert index.names == ["first", "second"]
    assert index.sample("second").mask is None
    text = "\n".join(index.problems)
    assert "list.csv line 3: mask labels/missing.png does not exist" in text
    assert "list.csv line 4: image imgs/gone.png does not exist" in text
    assert "list.csv line 5: sample name 'first' is already used on line 2" in text


def test_csv_without_needed_columns(tmp_path):
    (tmp_path / "d.csv").write_text("path,label\na.png,b.png\n")
    with pytest.raises(BiosegError, match=r"d\.csv has columns path, label; it needs the columns image,mask"):
        discover(tmp_path / "d.csv")


def test_nothing_recognisable_describes_the_layouts(tmp_path):
    _files(tmp_path / "pictures", ["a.png"])
    with pytest.raises(BiosegError) as info:
        discover(tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "pictures/" in message
    for layout in ("'pairs'", "'xy'", "'csv'"):
        assert layout in message


def test_missing_root_and_wrong_layout(tmp_path):
    with pytest.raises(BiosegError, match="does not exist"):
        discover(tmp_path / "nowhere")
    _files(tmp_path / "images", ["a.png"])
    with pytest.raises(BiosegError, match="no train/x folder"):
        discover(tmp_path, layout="xy")
    with pytest.raises(BiosegError, match="unknown layout"):
        discover(tmp_path, layout="folders")  # type: ignore[arg-type]


def test_names_are_stable_when_files_are_added(tmp_path):
    _files(tmp_path / "images", ["a.png", "c.png"])
    _files(tmp_path / "masks", ["a.png", "c.png"], MASK)
    before = discover(tmp_path).names
    _files(tmp_path / "images", ["b.png"])
    _files(tmp_path / "masks", ["b.png"], MASK)
    after = discover(tmp_path).names
    assert set(before) <= set(after) and after == ["a", "b", "c"]


def test_natural_key():
    assert sorted(["img10", "img2", "Img1"], key=natural_key) == ["Img1", "img2", "img10"]
