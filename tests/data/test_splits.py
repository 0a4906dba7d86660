"""Splits: deterministic, disjoint, complete; folds partition the pool; stratification; split files."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import DATASETS

from bioseg.data.layouts import DatasetIndex, Sample, discover
from bioseg.data.splits import compute_splits, load_split, make_splits
from bioseg.errors import BiosegError

ISBI = DATASETS / "isbi2012_em"


def _index(n: int, root: Path = Path("/nonexistent"), presplit: dict | None = None) -> DatasetIndex:
    if presplit is None:
        names = [f"s{i}" for i in range(n)]
    else:
        names = [x for part in presplit.values() for x in part]
    samples = [Sample(name, root / f"{name}.png", root / f"{name}_mask.png") for name in names]
    return DatasetIndex(root=root, layout="xy" if presplit else "pairs", samples=samples, presplit=presplit)


def _read(path: Path) -> list[str]:
    return path.read_text().split()


def test_files_written_and_folds_partition_the_pool(tmp_path):
    index = _index(23)
    out = make_splits(index, folds=4, test_split=0.2, seed=3, out_dir=tmp_path / "splits")
    assert out == tmp_path / "splits"
    assert sorted(os.listdir(out)) == sorted(
        ["test.txt", "splits.json"] + [f"fold_{k}_{part}.txt" for k in range(4) for part in ("train", "val")]
    )
    test = _read(out / "test.txt")
    assert len(test) == 5  # round(0.2 * 23)
    pool = set(index.names) - set(test)
    vals = [set(_read(out / f"fold_{k}_val.txt")) for k in range(4)]
    assert sorted(len(v) for v in vals) == [4, 4, 5, 5]  # 18 left, as equal as can be
    assert set().union(*vals) == pool and sum(len(v) for v in vals) == len(pool)  # a partition
    for k in range(4):
        train = set(_read(out / f"fold_{k}_train.txt"))
        assert train == pool - vals[k]
        assert not train & set(test) and not vals[k] & set(test)
        assert load_split(out, k) == {
            "train": _read(out / f"fold_{k}_train.txt"),
            "val": _read(out / f"fold_{k}_val.txt"),
            "test": test,
        }
    info = json.loads((out / "splits.json").read_text())
    assert info["seed"] == 3 and info["folds"] == 4 and info["test_split"] == 0.2
    assert info["counts"]["test"] == 5 and info["counts"]["samples"] == 23
    assert [f["val"] for f in info["counts"]["folds"]] == [len(v) for v in vals]


def test_deterministic_for_a_seed_and_independent_of_order(tmp_path):
    index = _index(20)
    a = make_splits(index, seed=1, out_dir=tmp_path / "a")
    b = make_splits(index, seed=1, out_dir=tmp_path / "b")
    for name in os.listdir(a):
        if name != "splits.json":
            assert (a / name).read_text() == (b / name).read_text()
    shuffled = DatasetIndex(index.root, index.layout, list(reversed(index.samples)), None)
    assert compute_splits(shuffled, seed=1) == compute_splits(index, seed=1)
    assert compute_splits(index, seed=2) != compute_splits(index, seed=1)


def test_single_fold_uses_val_split(tmp_path):
    index = _index(20)
    split = compute_splits(index, folds=1, test_split=0.25, val_split=0.2)
    assert len(split["test"]) == 5 and len(split["folds"]) == 1
    fold = split["folds"][0]
    assert len(fold["val"]) == 3 and len(fold["train"]) == 12  # round(0.2 * 15)
    assert set(fold["train"]) | set(fold["val"]) | set(split["test"]) == set(index.names)


def test_no_test_set():
    split = compute_splits(_index(10), folds=5, test_split=0)
    assert split["test"] == []
    assert sorted(n for f in split["folds"] for n in f["val"]) == sorted(_index(10).names)


def _rare_index(n: int = 50, rare: int = 10) -> tuple[DatasetIndex, dict[str, list[int]]]:
    index = _index(n)
    # the rare class sits on the first names, the ones an unlucky random cut gathers together
    presence = {name: [0, 1] if i < rare else [0] for i, name in enumerate(index.names)}
    return index, presence


def _rare_counts(split: dict, presence: dict[str, list[int]]) -> list[int]:
    groups = [split["test"]] + [f["val"] for f in split["folds"]]
    return [sum(1 in presence[n] for n in g) for g in groups]


def test_stratified_balances_a_rare_class():
    index, presence = _rare_index()
    unbalanced = 0
    for seed in range(10):
        strat = compute_splits(index, seed=seed, stratified=True, class_presence=presence)
        counts = _rare_counts(strat, presence)
        # 10 of 50 samples: 2 in the test set of 10, then 8 over 5 folds of 8: 1 or 2 each
        assert counts[0] == 2 and all(c in (1, 2) for c in counts[1:]), (seed, counts)
        assert len(strat["test"]) == 10 and [len(f["val"]) for f in strat["folds"]] == [8] * 5
        plain = _rare_counts(compute_splits(index, seed=seed), presence)
        unbalanced += plain != counts
    assert unbalanced > 0  # a random cut does not balance by itself


def test_stratified_with_several_rare_classes():
    index = _index(40)
    rng = np.random.default_rng(0)
    presence = {n: [0] + [c for c in (1, 2, 3) if rng.random() < 0.1 * c] for n in index.names}
    split = compute_splits(index, folds=4, test_split=0.25, stratified=True, class_presence=presence)
    for cls in (1, 2, 3):
        total = sum(cls in p for p in presence.values())
        groups = [split["test"]] + [f["val"] for f in split["folds"]]
        counts = [sum(cls in presence[n] for n in g) for g in groups]
        expected = [total * len(g) / 40 for g in groups]
        assert max(abs(c - e) for c, e in zip(counts, expected, strict=True)) <= 1.0, (cls, counts, expected)
    everything = split["test"] + split["folds"][0]["train"] + split["folds"][0]["val"]
    assert sorted(everything) == sorted(index.names)


def test_stratified_needs_class_presence():
    with pytest.raises(BiosegError, match="class_presence"):
        compute_splits(_index(10), stratified=True)
    with pytest.raises(BiosegError, match="lacks 1 samples"):
        compute_splits(_index(10), stratified=True, class_presence={f"s{i}": [0] for i in range(9)})


def test_presplit_keeps_its_test_and_val(tmp_path):
    presplit = {"train": [f"train/t{i}" for i in range(8)], "val": ["val/v0", "val/v1"], "test": ["test/x0"]}
    index = _index(0, presplit=presplit)
    out = make_splits(index, folds=5, out_dir=tmp_path)
    assert load_split(out, 0) == presplit
    assert json.loads((out / "splits.json").read_text())["folds"] == 1
    with pytest.raises(BiosegError, match="fold 1 is not in .*folds 0..0"):
        load_split(out, 1)


def test_presplit_without_val_makes_folds_and_carves_test_when_absent():
    presplit = {"train": [f"train/t{i}" for i in range(10)], "val": [], "test": ["test/x0", "test/x1"]}
    split = compute_splits(_index(0, presplit=presplit), folds=5)
    assert split["test"] == ["test/x0", "test/x1"]
    assert sorted(n for f in split["folds"] for n in f["val"]) == sorted(presplit["train"])
    no_test = {"train": [f"train/t{i}" for i in range(10)], "val": ["val/v"], "test": []}
    split = compute_splits(_index(0, presplit=no_test), test_split=0.2)
    assert len(split["test"]) == 2 and all(n.startswith("train/") for n in split["test"])
    rest = sorted(set(no_test["train"]) - set(split["test"]), key=lambda s: int(s[7:]))
    assert split["folds"] == [{"train": rest, "val": ["val/v"]}]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"folds": 0}, "folds must be a whole number of at least 1"),
        ({"test_split": 1.0}, r"test_split must be a fraction in \[0, 1\)"),
        ({"val_split": -0.1, "folds": 1}, "val_split must be a fraction"),
    ],
)
def test_bad_values(kwargs, message):
    with pytest.raises(BiosegError, match=message):
        compute_splits(_index(10), **kwargs)


def test_too_few_samples_says_how_many_are_needed():
    with pytest.raises(BiosegError, match="has 5 samples, too few .* 5 folds: that needs at least 6") as info:
        compute_splits(_index(5), folds=5, test_split=0.2)
    assert "test_split 0.2" in str(info.value)
    compute_splits(_index(6), folds=5, test_split=0.2)  # the number it gave is enough
    with pytest.raises(BiosegError, match="needs at least 2"):
        compute_splits(_index(1), folds=1, test_split=0, val_split=0.1)


def test_fewer_folds_remove_stale_fold_files(tmp_path):
    index = _index(20)
    make_splits(index, folds=5, out_dir=tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    make_splits(index, folds=2, out_dir=tmp_path)
    assert not (tmp_path / "fold_4_val.txt").exists() and (tmp_path / "notes.txt").exists()
    with pytest.raises(BiosegError, match="fold 4 is not in .*folds 0..1.*bioseg split DATA_DIR"):
        load_split(tmp_path, 4)


def test_load_split_without_splits_says_what_to_run(tmp_path):
    with pytest.raises(BiosegError, match="bioseg split DATA_DIR"):
        load_split(tmp_path / "splits", 0)


def test_default_folder_and_read_only_folders(tmp_path):
    index = _index(10, root=tmp_path)
    assert make_splits(index) == tmp_path / "splits"
    assert load_split(tmp_path / "splits", 0)["test"]
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(BiosegError, match="read-only"):
            make_splits(_index(10, root=locked))
        assert not (locked / "splits").exists()
    finally:
        locked.chmod(0o755)


@pytest.mark.skipif(not ISBI.is_dir(), reason=f"real dataset not present at {ISBI}")
def test_isbi2012_split(tmp_path):
    index = discover(ISBI)
    out = make_splits(index, folds=5, test_split=0.2, out_dir=tmp_path)
    split = load_split(out, 0)
    assert len(split["test"]) == 6 and len(split["train"]) + len(split["val"]) == 24
    assert set(split["train"]) | set(split["val"]) | set(split["test"]) == {str(i) for i in range(30)}
