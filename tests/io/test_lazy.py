"""Lazy images: OME-Zarr, HDF5 and TIFF read region by region as (C, *spatial), as dask arrays, and
pickled to other processes as a path."""

import pickle

import h5py
import numpy as np
import pytest

from bioseg.io.errors import ImageReadError
from bioseg.io.lazy import open_lazy
from bioseg.io.writing import write_tiff
from bioseg.io.zarr_io import write_ome_zarr


@pytest.fixture()
def czyx():
    return np.arange(2 * 5 * 12 * 9, dtype=np.uint16).reshape(2, 5, 12, 9)


def _check(image, expected):
    assert image.shape == expected.shape
    region = (slice(None), slice(1, 4), slice(3, 11), slice(0, 5))
    np.testing.assert_array_equal(image[region], expected[region])
    np.testing.assert_array_equal(image.dask().compute(), expected)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(image))[region], expected[region])


def test_ome_zarr_channels_moved_first(czyx, tmp_path):
    # stored as ZCYX is not NGFF order; write CZYX and read it back with its voxel size
    path = write_ome_zarr(tmp_path / "a.zarr", czyx, axes="CZYX", voxel_size=(2, 0.5, 0.5), chunks=(1, 2, 5, 5))
    image, voxel = open_lazy(path, 3)
    _check(image, czyx)
    assert image.chunks == (1, 2, 5, 5) and voxel == (2.0, 0.5, 0.5)


def test_hdf5_named_axes_are_transposed(czyx, tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("g/raw", data=np.moveaxis(czyx, 0, 1), chunks=(1, 2, 6, 9)).attrs["axes"] = "zcyx"
    image, _ = open_lazy(tmp_path / "a.h5" / "g/raw", 3)
    _check(image, czyx)


def test_tiff_memory_mapped_and_single_channel(czyx, tmp_path):
    path = write_tiff(tmp_path / "a.tif", czyx[0], axes="ZYX")
    image, _ = open_lazy(path, 3)
    _check(image, czyx[:1])


def test_compressed_tiff_is_read_through_its_zarr_store(czyx, tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "c.tif", np.moveaxis(czyx, 0, 1), compression="zlib", metadata={"axes": "ZCYX"})
    image, _ = open_lazy(tmp_path / "c.tif", 3)
    _check(image, czyx)


def test_unknown_layout_asks_for_axes(czyx, tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("raw", data=czyx)
    with pytest.raises(ImageReadError, match="give axes"):
        open_lazy(tmp_path / "a.h5", 3)
    image, _ = open_lazy(tmp_path / "a.h5", 3, axes="CZYX")
    _check(image, czyx)
