"""init-config measures its statistics on the training split: test images never shape them."""

import numpy as np
import pytest

from bioseg.data.layouts import discover
from bioseg.data.splits import compute_splits, load_split, make_splits
from bioseg.errors import BiosegError
from bioseg.io import write_png
from bioseg.workflows.init_config import infer_setup
from bioseg.workflows.init_split import training_names


def _dataset(root, n=10, bright=()):
    rng = np.random.default_rng(0)
    for i in range(n):
        level = 200 if f"s{i}" in bright else 20
        write_png(root / "images" / f"s{i}.png", (level + rng.integers(0, 30, (33, 34))).astype(np.uint8))
        write_png(root / "masks" / f"s{i}.png", (rng.random((33, 34)) > 0.5).astype(np.uint8))
    return root


def test_normalisation_ignores_the_test_images(tmp_path):
    root = _dataset(tmp_path / "probe")
    test = compute_splits(discover(root))["test"]  # the default split, as 'bioseg split' makes it
    root = _dataset(tmp_path / "data", bright=test)  # the same names: the same split; test images far brighter
    inferred = infer_setup(root)
    norm = inferred.config["data"]["normalization"]
    assert norm["mode"] == "dataset"
    assert norm["low"][0] >= 20 and norm["high"][0] < 50 + 1  # the bright test images (200..229) left out
    assert "made the default one" in inferred.notes[0] and (root / "splits" / "test.txt").is_file()
    assert load_split(root / "splits", 0)["test"] == test


def test_an_existing_split_is_used_as_it_is(tmp_path):
    root = _dataset(tmp_path / "data", n=6)
    make_splits(discover(root), folds=1, test_split=0.5, val_split=0.34, seed=3)
    names, note, elsewhere = training_names(discover(root))
    assert names == load_split(root / "splits", 0)["train"] and "fold 0 of" in note and elsewhere is None


def test_a_dataset_too_small_for_the_default_split_uses_every_image(tmp_path):
    root = _dataset(tmp_path / "data", n=2)
    names, note, _ = training_names(discover(root))
    assert names == ["s0", "s1"] and "all 2 images" in note and not (root / "splits").exists()


def test_a_read_only_dataset_gets_the_split_unwritten(tmp_path, monkeypatch):
    root = _dataset(tmp_path / "data")

    def refuse(*args, **kwargs):
        raise BiosegError("read-only")

    monkeypatch.setattr("bioseg.workflows.init_split.make_splits", refuse)
    names, note, elsewhere = training_names(discover(root))
    assert names == compute_splits(discover(root))["folds"][0]["train"]
    assert "could not be written" in note and "data.splits_dir" in note and elsewhere is None


def test_a_read_only_dataset_gets_its_split_beside_the_config_which_names_it(tmp_path, monkeypatch):
    from bioseg import config as config_mod
    from bioseg.data.checked import checked_data

    root = _dataset(tmp_path / "data")
    make = make_splits

    def refuse_the_dataset(index, out_dir=None, **options):
        if out_dir is None:
            raise BiosegError("read-only")
        return make(index, out_dir=out_dir, **options)

    monkeypatch.setattr("bioseg.workflows.init_split.make_splits", refuse_the_dataset)
    inferred = infer_setup(root, splits_elsewhere=tmp_path / "cfg" / "exp_splits")
    written = tmp_path / "cfg" / "exp_splits"
    assert inferred.config["data"]["splits_dir"] == str(written) and not (root / "splits").exists()
    assert "set data.splits_dir" in inferred.notes[0]
    cfg = config_mod.from_dict(inferred.config)
    assert checked_data(cfg)[1]["test"] == compute_splits(discover(root))["test"]  # training finds it


@pytest.mark.parametrize("name", ["dsb2018_nuclei"])
def test_a_real_dataset_is_configured_from_its_training_split(name, monkeypatch):
    from helpers import dataset_dir

    def refuse(*args, **kwargs):  # the shared dataset is never written into
        raise BiosegError("read-only")

    root = dataset_dir(name)
    monkeypatch.setattr("bioseg.workflows.init_split.make_splits", refuse)
    names, note, _ = training_names(discover(root))
    assert 0 < len(names) < len(discover(root).samples) and "training images" in note
