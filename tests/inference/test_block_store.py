"""The block store: an NGFF image with label images, chunked by block; finished stages recorded per
block; resumed only with the same settings, refused in one line otherwise."""

import numpy as np
import pytest
import zarr

from bioseg.errors import BiosegError
from bioseg.inference.block_store import BlockStore, StoreLayout
from bioseg.io.zarr_io import load_zarr, ome_zarr_voxel_size, read_ome_zarr_labels

LAYOUT = StoreLayout((10, 30, 20), (4, 16, 16), {"fg": 1, "cells": 3}, {"fg": 2, "cells": 3}, True, (2.0, 0.5, 0.5))


def test_store_is_ngff_and_chunked_by_block(tmp_path):
    store = BlockStore.open(tmp_path / "out.zarr", LAYOUT, {"model": "abc"})
    assert store.array("probabilities").chunks == (4, 4, 16, 16)
    assert store.array("objects").dtype == np.uint64 and store.array("cells").chunks == (4, 16, 16)
    assert store.done().shape == (3, 2, 2) and not store.done().any()
    image, axes = load_zarr(tmp_path / "out.zarr", "")
    assert image.shape == (4, 10, 30, 20) and axes == "CZYX"
    assert ome_zarr_voxel_size(tmp_path / "out.zarr", "") == (2.0, 0.5, 0.5)
    assert read_ome_zarr_labels(tmp_path / "out.zarr", "objects").shape == (10, 30, 20)
    assert not (tmp_path / "out.zarr.partial").exists()


def test_marks_are_per_block_and_per_stage(tmp_path):
    store = BlockStore.open(tmp_path / "out.zarr", LAYOUT, {"model": "abc"})
    store.mark((1, 0, 1), "probabilities")
    store.mark((1, 0, 1), "objects")
    again = BlockStore.open(tmp_path / "out.zarr", LAYOUT, {"model": "abc"})
    done = again.done()
    assert done[1, 0, 1] == 3 and done.sum() == 3


def test_other_settings_are_refused_naming_what_differs(tmp_path):
    BlockStore.open(tmp_path / "out.zarr", LAYOUT, {"model": "abc", "infer": {"overlap": 0.25}})
    with pytest.raises(BiosegError, match=r"other settings \(infer.overlap differs\)"):
        BlockStore.open(tmp_path / "out.zarr", LAYOUT, {"model": "abc", "infer": {"overlap": 0.5}})
    with pytest.raises(BiosegError, match=r"\(model differs\)"):
        BlockStore.open(tmp_path / "out.zarr", LAYOUT, {"model": "xyz", "infer": {"overlap": 0.25}})
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(BiosegError, match="not a block-wise prediction store"):
        BlockStore.open(tmp_path / "plain.zarr", LAYOUT, {"model": "abc"})


def test_saved_files_are_whole(tmp_path):
    store = BlockStore.open(tmp_path / "out.zarr", LAYOUT, {})
    path = store.face_path((0, 1, 0), 2, "hi")
    store.save(path, np.arange(5, dtype=np.uint64))
    np.testing.assert_array_equal(np.load(path), np.arange(5))
    assert not list(path.parent.glob("*.tmp"))
