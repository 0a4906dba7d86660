"""The GUI's prediction without the page: the files bioseg predict writes, the settings' effects, the
objects' table, and every bad upload as one line naming the file."""

import zipfile

import numpy as np
import pytest
import tifffile

from bioseg.errors import BiosegError
from bioseg.gui.predict import Settings, make_predictor, object_rows, predict_uploads, read_upload
from bioseg.inference.files import predict_files
from bioseg.io import write_png, write_tiff

MB = 2**20


@pytest.fixture(scope="module")
def image(cells_dir):
    return sorted((cells_dir / "images").iterdir())[0]


def test_labels_and_objects_equal_bioseg_predicts_with_the_same_settings(object_run, image, tmp_path):
    result = predict_uploads(object_run, [image], Settings(threshold=0.3, precision="fp32"), tmp_path / "gui", MB)
    predict_files(object_run, [image], tmp_path / "cli", progress=False, threshold=0.3, precision="fp32")
    stem = image.stem
    for name in (f"{stem}_labels.tif", f"{stem}_instances.tif", f"{stem}_prob.tif"):
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "gui" / name),
                                      tifffile.imread(tmp_path / "cli" / name))  # fmt: skip
    with zipfile.ZipFile(result.archive) as zf:
        assert sorted(zf.namelist()) == sorted(f"{stem}_{k}" for k in
                                               ("labels.tif", "prob.tif", "instances.tif", "objects.csv"))  # fmt: skip
    assert len(result.images[0].objects) == int(result.images[0].instances.max())


def test_the_threshold_and_the_object_settings_change_the_result(object_run, image, tmp_path):
    def run(**settings):
        return predict_uploads(object_run, [image], Settings(precision="fp32", **settings), tmp_path / str(settings),
                               MB).images[0]  # fmt: skip

    low, high = run(threshold=0.2), run(threshold=0.8)
    assert low.labels["mask"].sum() > high.labels["mask"].sum()
    small, large = run(object_min_size=0), run(object_min_size=30)
    assert len(large.objects) < len(small.objects)
    assert min(o["size"] for o in large.objects) >= 30


def test_object_settings_go_into_a_copy_of_the_config(object_run):
    predictor = make_predictor(object_run, Settings(object_threshold=0.7, seed_h=2.0, object_min_size=5))
    inst = predictor.cfg.post.instances
    assert (inst.threshold, inst.h, inst.min_size) == (0.7, 2.0, 5)
    assert predictor.bundle.cfg.post.instances.min_size == 0  # the loaded run is untouched


def test_object_rows_give_sizes_and_centroids():
    labels = np.zeros((6, 7), np.int32)
    labels[1:3, 1:4] = 4  # 2×3 at rows 1-2, cols 1-3
    labels[5, 6] = 9
    assert object_rows(labels) == [{"id": 4, "size": 6, "centroid_y": 1.5, "centroid_x": 2.0},
                                   {"id": 9, "size": 1, "centroid_y": 5.0, "centroid_x": 6.0}]  # fmt: skip
    assert object_rows(np.zeros((2, 3, 4), np.int32)) == []
    volume = np.zeros((3, 4, 4), np.int32)
    volume[2, 1:3, 0] = 1
    assert object_rows(volume) == [{"id": 1, "size": 2, "centroid_z": 2.0, "centroid_y": 1.5, "centroid_x": 0.0}]


def test_two_uploads_of_one_name_keep_both_results(object_run, image, tmp_path):
    copy = tmp_path / "again" / image.name
    copy.parent.mkdir()
    copy.write_bytes(image.read_bytes())
    result = predict_uploads(object_run, [image, copy], Settings(), tmp_path / "out", MB)
    assert [r.name for r in result.images] == [image.stem, f"{image.stem}_2"]


@pytest.fixture
def bad_files(tmp_path):
    rng = np.random.default_rng(0)
    rgb = tmp_path / "rgb.png"
    write_png(rgb, rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    stack = tmp_path / "stack.tif"
    write_tiff(stack, rng.integers(0, 255, (6, 32, 32), dtype=np.uint8), axes="ZYX")
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + bytes(range(256)) * 4)
    big = tmp_path / "big.tif"
    write_tiff(big, rng.integers(0, 255, (800, 800), dtype=np.uint8))
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    return {"rgb": rgb, "stack": stack, "corrupt": corrupt, "big": big, "text": text}


@pytest.mark.parametrize(("kind", "said"), [
    ("rgb", "rgb.png has 3 channel(s)"),
    ("stack", "stack.tif is a 3D stack of 6 planes; the chosen model is 2D"),
    ("corrupt", "corrupt.tif cannot be read as a TIFF"),
    ("big", "big.tif is 0.6 MB; the limit is 0.5 MB"),
    ("text", "notes.txt: unknown image type .txt"),
])  # fmt: skip
def test_a_bad_upload_is_one_line_naming_the_file(object_run, bad_files, kind, said):
    predictor = make_predictor(object_run, Settings())
    with pytest.raises(BiosegError) as err:
        read_upload(bad_files[kind], predictor, MB // 2)
    message = str(err.value)
    assert message.startswith(said) and "\n" not in message
    assert str(bad_files[kind].parent) not in message  # the upload folder is not the user's business


def test_nothing_given_is_one_line(object_run, tmp_path):
    with pytest.raises(BiosegError, match="no image given"):
        predict_uploads(object_run, [], Settings(), tmp_path, MB)


def test_an_hdf5_file_and_an_ome_zarr_store_on_disk_predict_like_the_image_they_hold(object_run, image, tmp_path):
    import h5py

    from bioseg.io import read_image
    from bioseg.io.zarr_io import write_ome_zarr

    pixels = read_image(image)[0]
    with h5py.File(tmp_path / "cells.h5", "w") as f:
        f["raw"] = pixels
    write_ome_zarr(tmp_path / "cells.zarr", pixels, axes="YX")
    paths = [image, tmp_path / "cells.h5", tmp_path / "cells.zarr"]
    result = predict_uploads(object_run, paths, Settings(precision="fp32"), tmp_path / "out", MB)
    png, h5, zarr = (r.labels["mask"] for r in result.images)
    np.testing.assert_array_equal(h5, png)
    np.testing.assert_array_equal(zarr, png)
    assert [r.name for r in result.images] == [image.stem, "cells", "cells_2"]
    assert not (tmp_path / "cells.zarr" / "labels").exists()  # the user's store is left as it was


def test_a_volume_for_a_3d_model_gives_objects_with_a_z_centroid(tmp_path):
    from helpers import saved_run

    run = saved_run(tmp_path / "run3d", {
        "name": "vol3d",
        "data": {"root": str(tmp_path / "absent"), "patch_size": [8, 32, 32]},
        "model": {"spatial_dims": 3, "widths": [4, 8], "pool_sizes": [[1, 2, 2]]},
        "infer": {"patch_size": [8, 32, 32], "precision": "fp32"},
        "post": {"instances": {"mode": "foreground"}},
    })  # fmt: skip
    stack = tmp_path / "stack.tif"
    write_tiff(stack, np.random.default_rng(0).random((6, 40, 36)).astype(np.float32), axes="ZYX")
    image = predict_uploads(run, [stack], Settings(threshold=0.5), tmp_path / "out", MB).images[0]
    assert image.raw.shape == (1, 6, 40, 36) and image.instances.shape == (6, 40, 36)
    assert [list(o) for o in image.objects[:1]] == [["id", "size", "centroid_z", "centroid_y", "centroid_x"]]
    assert sum(o["size"] for o in image.objects) == int((image.instances > 0).sum())


def test_a_two_channel_model_takes_a_two_channel_image_and_refuses_a_grey_one(tmp_path):
    from helpers import saved_run

    run = saved_run(tmp_path / "run2c", {
        "name": "two_channels",
        "data": {"root": str(tmp_path / "absent"), "patch_size": [32, 32], "in_channels": 2},
        "model": {"widths": [4, 8]},
        "infer": {"patch_size": [32, 32], "precision": "fp32"},
    })  # fmt: skip
    rng = np.random.default_rng(3)
    both = tmp_path / "both.tif"
    write_tiff(both, rng.random((2, 40, 36)).astype(np.float32), axes="CYX")
    grey = tmp_path / "grey.png"
    write_png(grey, rng.integers(0, 255, (40, 36), dtype=np.uint8))
    image = predict_uploads(run, [both], Settings(), tmp_path / "out", MB).images[0]
    assert image.raw.shape == (2, 40, 36) and image.labels["mask"].shape == (40, 36)
    with pytest.raises(BiosegError, match=r"^grey.png has 1 channel\(s\) .*the chosen model reads 2"):
        predict_uploads(run, [grey], Settings(), tmp_path / "out2", MB)
