"""3D image I/O: TIFF stacks with axes and voxel size, OME-Zarr, HDF5, and the real 3D dataset."""

import sys

import numpy as np
import pytest
import tifffile
from helpers import DATASETS

from bioseg.errors import BiosegError
from bioseg.io import (
    ImageReadError,
    read_image,
    read_mask,
    read_ome_zarr_labels,
    read_voxel_size,
    write_ome_zarr,
    write_tiff,
)

RNG = np.random.default_rng(0)
OVULES = DATASETS / "plantseg_ovules_3d"


def _czyx(c: int = 2, z: int = 5, dtype=np.uint16) -> np.ndarray:
    return RNG.integers(0, 1000, (c, z, 17, 18)).astype(dtype)


# --- TIFF ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stored", ["CZYX", "ZCYX", "ZYXC"])
def test_tiff_stack_axes_from_metadata(tmp_path, stored):
    volume = _czyx(3)
    array = np.transpose(volume, ["CZYX".index(a) for a in stored])
    write_tiff(tmp_path / "v.tif", array, axes=stored)
    np.testing.assert_array_equal(read_image(tmp_path / "v.tif", spatial_dims=3), volume)


@pytest.mark.parametrize("depth", [2, 4, 9])
def test_depth_varies_between_volumes(tmp_path, depth):
    volume = RNG.integers(0, 255, (depth, 17, 18), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "v.tif", volume, imagej=True, metadata={"axes": "ZYX"})
    out = read_image(tmp_path / "v.tif", spatial_dims=3)
    assert out.shape == (1, depth, 17, 18)
    np.testing.assert_array_equal(out[0], volume)


def test_3d_array_without_metadata_is_zyx(tmp_path):
    volume = RNG.normal(size=(3, 17, 18)).astype(np.float32)  # 3 planes, not 3 channels, in 3D
    tifffile.imwrite(tmp_path / "plain.tif", volume, metadata=None)
    np.testing.assert_array_equal(read_image(tmp_path / "plain.tif", spatial_dims=3), volume[None])


def test_4d_array_without_metadata_is_refused_then_read_with_axes(tmp_path):
    stored = np.moveaxis(_czyx(2, 4), 0, 1)  # (Z, C, Y, X) but the file does not say so
    tifffile.imwrite(tmp_path / "amb.tif", stored)
    with pytest.raises(ImageReadError, match=r"amb\.tif has shape \(4, 2, 17, 18\).*data\.axes"):
        read_image(tmp_path / "amb.tif", spatial_dims=3)
    out = read_image(tmp_path / "amb.tif", spatial_dims=3, axes="zcyx")  # lower case is fine
    np.testing.assert_array_equal(out, np.moveaxis(stored, 1, 0))


def test_explicit_axes_override_metadata_and_are_checked(tmp_path):
    volume = RNG.integers(0, 255, (6, 17, 18), dtype=np.uint8)
    write_tiff(tmp_path / "v.tif", volume, axes="ZYX")
    # the caller knows better: the 6 planes are channels of a 2D image
    np.testing.assert_array_equal(read_image(tmp_path / "v.tif", axes="CYX"), volume)
    with pytest.raises(ImageReadError, match="axes 'ZCYX' name 4 axes"):
        read_image(tmp_path / "v.tif", spatial_dims=3, axes="ZCYX")
    with pytest.raises(BiosegError, match="at most once"):
        read_image(tmp_path / "v.tif", spatial_dims=3, axes="ZQX")
    with pytest.raises(ImageReadError, match="2D image with channels, not a volume"):
        read_image(tmp_path / "v.tif", spatial_dims=3, axes="CYX")


def test_single_time_point_is_dropped_and_time_series_refused(tmp_path):
    volume = _czyx(2, 3)
    write_tiff(tmp_path / "t1.tif", volume[None].transpose(0, 2, 1, 3, 4), axes="TZCYX")
    np.testing.assert_array_equal(read_image(tmp_path / "t1.tif", spatial_dims=3), volume)
    series = RNG.integers(0, 255, (4, 3, 17, 18), dtype=np.uint8)
    write_tiff(tmp_path / "t4.tif", series, axes="TZYX")
    with pytest.raises(ImageReadError, match="time series are not supported"):
        read_image(tmp_path / "t4.tif", spatial_dims=3)


def test_read_mask_3d_keeps_wide_label_dtypes(tmp_path):
    for dtype, top in ((np.uint16, 4000), (np.uint32, 70000)):
        labels = RNG.integers(0, top, (4, 17, 18)).astype(dtype)
        write_tiff(tmp_path / "m.tif", labels, axes="ZYX")
        out = read_mask(tmp_path / "m.tif", spatial_dims=3)
        assert out.dtype == dtype and out.shape == (4, 17, 18)
        np.testing.assert_array_equal(out, labels)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.int32, np.uint32, np.int64])
def test_voxel_size_round_trips_through_tiff(tmp_path, dtype):
    volume = _czyx(2, 3).astype(dtype)
    path = write_tiff(tmp_path / "v.tif", volume, axes="CZYX", voxel_size=(0.5, 0.25, 0.125))
    assert read_voxel_size(path) == pytest.approx((0.5, 0.25, 0.125))
    np.testing.assert_array_equal(read_image(path, spatial_dims=3), volume)
    with tifffile.TiffFile(path) as tif:  # what Fiji would read, seen by tifffile itself
        if np.dtype(dtype) in (np.uint8, np.uint16, np.float32):
            assert tif.is_imagej and tif.series[0].axes == "ZCYX"
            assert tif.imagej_metadata["spacing"] == pytest.approx(0.5)
            num, den = tif.pages.first.tags["XResolution"].value
            assert den / num == pytest.approx(0.125)
        else:  # ImageJ cannot hold these: OME-TIFF instead
            assert tif.is_ome and 'PhysicalSizeZ="0.5"' in tif.ome_metadata


def test_voxel_size_from_files_written_by_others(tmp_path):
    volume = RNG.integers(0, 255, (3, 17, 18), dtype=np.uint8)
    # Fiji's way: unit "micron", z spacing, pixels per micron in the resolution tags
    tifffile.imwrite(tmp_path / "fiji.tif", volume, imagej=True, resolution=(1 / 0.2, 1 / 0.3),
                     metadata={"axes": "ZYX", "spacing": 0.9, "unit": "micron"})
    assert read_voxel_size(tmp_path / "fiji.tif") == pytest.approx((0.9, 0.3, 0.2))
    tifffile.imwrite(tmp_path / "nm.tif", volume, imagej=True, resolution=(1 / 200, 1 / 300),
                     metadata={"axes": "ZYX", "spacing": 900, "unit": "nm"})
    assert read_voxel_size(tmp_path / "nm.tif") == pytest.approx((0.9, 0.3, 0.2))
    # a plain TIFF in pixels per centimetre: xy only, z defaults to 1 as in ImageJ
    tifffile.imwrite(
        tmp_path / "cm.tif", volume[0], resolution=(1e4 / 0.2, 1e4 / 0.3), resolutionunit="CENTIMETER"
    )
    assert read_voxel_size(tmp_path / "cm.tif") == pytest.approx((1.0, 0.3, 0.2))
    # OME-TIFF with a unit on z
    ome = {"axes": "ZYX", "PhysicalSizeZ": 900, "PhysicalSizeZUnit": "nm", "PhysicalSizeY": 0.3}
    tifffile.imwrite(tmp_path / "ome.tif", volume, ome=True, metadata={**ome, "PhysicalSizeX": 0.2})
    assert read_voxel_size(tmp_path / "ome.tif") == pytest.approx((0.9, 0.3, 0.2))


def test_uncalibrated_files_have_no_voxel_size(tmp_path):
    volume = RNG.integers(0, 255, (3, 17, 18), dtype=np.uint8)
    assert read_voxel_size(write_tiff(tmp_path / "a.tif", volume, axes="ZYX")) is None
    assert read_voxel_size(write_tiff(tmp_path / "b.tif", volume[0])) is None
    tifffile.imwrite(tmp_path / "c.tif", volume, metadata=None)
    assert read_voxel_size(tmp_path / "c.tif") is None


def test_bad_voxel_size_is_refused(tmp_path):
    with pytest.raises(BiosegError, match=r"voxel_size=\(0\.5, -1\.0, 1\.0\) must be"):
        write_tiff(tmp_path / "v.tif", np.zeros((3, 5, 6), np.uint8), axes="ZYX", voxel_size=(0.5, -1.0, 1.0))


# --- OME-Zarr ------------------------------------------------------------------------------------


def test_ome_zarr_round_trip_with_labels_and_voxel_size(tmp_path):
    zarr = pytest.importorskip("zarr", reason="OME-Zarr needs the zarr extra")
    volume = _czyx(2, 5)
    cells = RNG.integers(0, 70000, (5, 17, 18)).astype(np.uint32)  # instance ids above 65535
    nuclei = (cells % 3).astype(np.uint8)
    store = write_ome_zarr(tmp_path / "v.zarr", volume, axes="CZYX", voxel_size=(0.7, 0.3, 0.2),
                           labels={"cells": cells, "nuclei": nuclei})
    np.testing.assert_array_equal(read_image(store, spatial_dims=3), volume)
    assert read_voxel_size(store) == pytest.approx((0.7, 0.3, 0.2))
    out = read_ome_zarr_labels(store, "cells")
    assert out.dtype == np.uint32
    np.testing.assert_array_equal(out, cells)
    np.testing.assert_array_equal(read_mask(store / "labels" / "nuclei", spatial_dims=3), nuclei)
    # an independent reader (zarr itself) sees a real NGFF store
    root = zarr.open_group(str(store), mode="r")
    attrs = root.attrs.asdict()
    meta = attrs.get("ome", attrs)
    multiscale = meta["multiscales"][0]
    assert [a["name"] for a in multiscale["axes"]] == ["c", "z", "y", "x"]
    np.testing.assert_array_equal(root[multiscale["datasets"][0]["path"]][...], volume)
    label_attrs = zarr.open_group(str(store / "labels" / "cells"), mode="r").attrs.asdict()
    assert "image-label" in label_attrs.get("ome", label_attrs)
    with pytest.raises(BiosegError, match="no label image 'membranes'; it has cells, nuclei"):
        read_ome_zarr_labels(store, "membranes")


def test_ome_zarr_axes_order_pyramid_and_overwrite(tmp_path):
    pytest.importorskip("ome_zarr", reason="OME-Zarr needs the zarr extra")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    volume = _czyx(3, 4)
    store = write_ome_zarr(tmp_path / "v.zarr", np.moveaxis(volume, 0, 1), axes="ZCYX", scale_factors=(2,))
    np.testing.assert_array_equal(read_image(store, spatial_dims=3), volume)  # stored in NGFF order
    assert read_voxel_size(store) is None  # no voxel size given: NGFF's placeholder scale of 1
    levels = next(iter(Reader(parse_url(str(store)))())).data
    assert [tuple(level.shape) for level in levels] == [(3, 4, 17, 18), (3, 4, 8, 9)]  # z is kept
    with pytest.raises(BiosegError, match="already exists.*overwrite=True"):
        write_ome_zarr(store, volume)
    write_ome_zarr(store, volume[0], overwrite=True)
    np.testing.assert_array_equal(read_image(store, spatial_dims=3), volume[:1])


def test_ome_zarr_single_time_point_and_2d(tmp_path):
    pytest.importorskip("ome_zarr", reason="OME-Zarr needs the zarr extra")
    volume = _czyx(2, 3)
    store = write_ome_zarr(tmp_path / "t.zarr", volume[None], axes="TCZYX")
    np.testing.assert_array_equal(read_image(store, spatial_dims=3), volume)
    flat = write_ome_zarr(tmp_path / "flat.zarr", volume[:, 0], axes="CYX", voxel_size=(0.3, 0.2))
    np.testing.assert_array_equal(read_image(flat), volume[:, 0])
    assert read_voxel_size(flat) == pytest.approx((1.0, 0.3, 0.2))
    with pytest.raises(ImageReadError, match="2D image with channels, not a volume"):
        read_image(flat, spatial_dims=3)


def test_zarr_image_inside_a_plain_group_and_plain_arrays(tmp_path):
    zarr = pytest.importorskip("zarr", reason="OME-Zarr needs the zarr extra")
    volume = _czyx(1, 3)
    write_ome_zarr(tmp_path / "plate.zarr" / "raw", volume, voxel_size=(2.0, 1.0, 1.0))
    np.testing.assert_array_equal(read_image(tmp_path / "plate.zarr" / "raw", spatial_dims=3), volume)
    assert read_voxel_size(tmp_path / "plate.zarr" / "raw") == pytest.approx((2.0, 1.0, 1.0))
    plain = zarr.open_array(str(tmp_path / "plain.zarr"), mode="w", shape=(3, 5, 6), dtype="uint16")
    plain[...] = np.arange(90, dtype=np.uint16).reshape(3, 5, 6)
    np.testing.assert_array_equal(read_image(tmp_path / "plain.zarr", spatial_dims=3)[0], plain[...])
    assert read_voxel_size(tmp_path / "plain.zarr") is None


def test_ome_zarr_errors(tmp_path):
    pytest.importorskip("ome_zarr", reason="OME-Zarr needs the zarr extra")
    with pytest.raises(ImageReadError, match="does not exist"):
        read_image(tmp_path / "missing.zarr", spatial_dims=3)
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(ImageReadError, match=r"empty\.zarr holds no OME-Zarr image"):
        read_image(tmp_path / "empty.zarr", spatial_dims=3)
    with pytest.raises(BiosegError, match="label image 'cells' has shape"):
        write_ome_zarr(tmp_path / "x.zarr", _czyx(1, 3), labels={"cells": np.zeros((3, 5, 5), np.uint8)})


# --- HDF5 ----------------------------------------------------------------------------------------


def test_hdf5_dataset_by_path_or_keyword(tmp_path):
    h5py = pytest.importorskip("h5py", reason="HDF5 needs the hdf5 extra")
    volume, labels = _czyx(2, 4), RNG.integers(0, 500, (4, 17, 18)).astype(np.uint16)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        raw = f.create_dataset("raw", data=volume)
        raw.attrs["axes"] = "czyx"
        raw.attrs["element_size_um"] = (0.5, 0.1, 0.1)
        f.create_dataset("seg/cells", data=labels).attrs["resolution"] = (0.6, 0.2, 0.2)
    np.testing.assert_array_equal(read_image(tmp_path / "f.h5" / "raw", spatial_dims=3), volume)
    np.testing.assert_array_equal(read_image(tmp_path / "f.h5", dataset="raw", spatial_dims=3), volume)
    np.testing.assert_array_equal(read_mask(tmp_path / "f.h5" / "seg" / "cells", spatial_dims=3), labels)
    assert read_voxel_size(tmp_path / "f.h5" / "raw") == pytest.approx((0.5, 0.1, 0.1))
    assert read_voxel_size(tmp_path / "f.h5", dataset="seg/cells") == pytest.approx((0.6, 0.2, 0.2))
    with pytest.raises(ImageReadError, match=r"holds 2 datasets \(raw, seg/cells\); name one"):
        read_image(tmp_path / "f.h5", spatial_dims=3)
    with pytest.raises(ImageReadError, match="has no dataset 'nope'"):
        read_image(tmp_path / "f.h5", dataset="nope", spatial_dims=3)
    with pytest.raises(BiosegError, match="given twice"):
        read_image(tmp_path / "f.h5" / "raw", dataset="seg/cells", spatial_dims=3)


def test_hdf5_only_dataset_is_the_default_and_ilastik_axistags(tmp_path):
    h5py = pytest.importorskip("h5py", reason="HDF5 needs the hdf5 extra")
    volume = _czyx(2, 4)
    with h5py.File(tmp_path / "one.hdf5", "w") as f:
        f.create_dataset("data", data=np.moveaxis(volume, 0, -1)).attrs["axistags"] = (
            '{"axes": [{"key": "z"}, {"key": "y"}, {"key": "x"}, {"key": "c"}]}'
        )
    np.testing.assert_array_equal(read_image(tmp_path / "one.hdf5", spatial_dims=3), volume)
    assert read_voxel_size(tmp_path / "one.hdf5") is None
    with pytest.raises(ImageReadError, match="does not exist"):
        read_image(tmp_path / "other.h5" / "raw", spatial_dims=3)


@pytest.mark.parametrize(
    "module, path, extra",
    [("h5py", "f.h5/raw", "bioseg[hdf5]"), ("ome_zarr", "v.zarr", "bioseg[zarr]")],
)
def test_missing_extra_is_one_line_naming_it(tmp_path, monkeypatch, module, path, extra):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    (tmp_path / path.split("/")[0]).touch()
    with pytest.raises(BiosegError) as info:
        read_image(tmp_path / path, spatial_dims=3)
    assert f"pip install '{extra}'" in str(info.value) and "\n" not in str(info.value)


# --- real data -----------------------------------------------------------------------------------


@pytest.mark.skipif(not OVULES.is_dir(), reason=f"real 3D dataset not found at {OVULES}")
@pytest.mark.parametrize(
    "name, shape, n_labels", [("1135_mini", (100, 100, 100), 54), ("sample_ovule", (32, 128, 128), 50)]
)
def test_real_ovule_volumes_read_as_3d(name, shape, n_labels):
    image = read_image(OVULES / "images" / f"{name}.tif", spatial_dims=3)
    labels = read_mask(OVULES / "masks" / f"{name}.tif", spatial_dims=3)
    assert image.shape == (1, *shape) and labels.shape == shape
    np.testing.assert_array_equal(image[0], tifffile.imread(OVULES / "images" / f"{name}.tif"))
    ids = np.unique(labels)
    assert ids[0] == 0 and ids[1] >= 1 and ids.size - 1 == n_labels  # 0 = background, one id per object
    with pytest.raises(ImageReadError, match="3D stack"):  # and a 2D reader refuses them
        read_image(OVULES / "images" / f"{name}.tif")
