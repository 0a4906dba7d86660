"""Block-wise prediction equals whole-image prediction (to float rounding), from OME-Zarr, HDF5 and TIFF
inputs, into a valid OME-Zarr store; settings that need the whole image at once are refused."""

import numpy as np
import pytest
import zarr

from bioseg.errors import BiosegError
from bioseg.inference.blockwise import predict_blocks
from bioseg.inference.predictor import Predictor
from bioseg.io.writing import write_tiff
from bioseg.io.zarr_io import ome_zarr_voxel_size, read_ome_zarr_labels, write_ome_zarr


def _read(store, name="probabilities"):
    where = {"probabilities": "0"}.get(name, f"labels/{name}/0")
    return zarr.open_array(str(store / where), mode="r")[...]


def _labels_agree(labels, whole, probs, threshold=0.5):
    """Labels equal wherever the probability is not within float rounding of the threshold."""
    clear = np.abs(probs - threshold) > 1e-5
    np.testing.assert_array_equal(labels[clear], whole[clear])


# blocks aligned with the tile step (24 along y, x), unaligned, and one block along z (shorter than a tile)
@pytest.mark.parametrize("block_size", [(6, 24, 24), (7, 37, 29), (19, 48, 72)])
def test_blockwise_equals_whole_image_3d(run_3d_blocks, volume, tmp_path, block_size):
    source = write_ome_zarr(tmp_path / "in.zarr", volume, voxel_size=(2.0, 0.5, 0.5), chunks=(7, 32, 32))
    predictor = Predictor.from_run(run_3d_blocks)
    whole = predictor.predict(volume)
    out = tmp_path / "out.zarr"
    result = predict_blocks(predictor, source, out, block_size=block_size)
    assert result.plan.block_size == block_size
    assert result.predicted == result.plan.n_blocks > 1 and result.skipped == 0
    probs = _read(out)
    np.testing.assert_allclose(probs, whole.probabilities["mask"], rtol=0, atol=1e-5)
    _labels_agree(_read(out, "mask"), whole.labels["mask"], probs[0])
    # an NGFF store: the labels image is found by ome-zarr, with the input's voxel size
    assert ome_zarr_voxel_size(out, "") == (2.0, 0.5, 0.5)
    assert read_ome_zarr_labels(out, "mask").shape == volume.shape


def test_auto_tiles_predict_blocks_on_the_training_patch_grid(run_3d_blocks, volume, tmp_path):
    source = write_ome_zarr(tmp_path / "in.zarr", volume, voxel_size=(2.0, 0.5, 0.5), chunks=(7, 32, 32))
    # tiles planned per image would depend on the whole image: blocks tile with the training patch
    whole = Predictor.from_run(run_3d_blocks, patch_size=[8, 32, 32]).predict(volume)
    predictor = Predictor.from_run(run_3d_blocks, patch_size="auto")
    predict_blocks(predictor, source, tmp_path / "out.zarr", block_size=(7, 37, 29))
    np.testing.assert_allclose(_read(tmp_path / "out.zarr"), whole.probabilities["mask"], rtol=0, atol=1e-5)


def test_blockwise_equals_whole_image_2d_multihead(run_2d_multihead, tmp_path):
    rng = np.random.default_rng(1)
    image = rng.gamma(2.0, 30.0, (2, 101, 87)).astype(np.float32)  # (C, Y, X): the percentiles matter
    source = write_ome_zarr(tmp_path / "in.zarr", image, axes="CYX", chunks=(1, 40, 40))
    predictor = Predictor.from_run(run_2d_multihead)
    whole = predictor.predict(image)
    out = tmp_path / "out.zarr"
    predict_blocks(predictor, source, out, block_size=(32, 48))
    probs = _read(out)
    assert probs.shape == (4, 101, 87)  # fg (1 channel), then cells (3)
    np.testing.assert_allclose(probs[:1], whole.probabilities["fg"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(probs[1:], whole.probabilities["cells"], atol=1e-5, rtol=0)
    _labels_agree(_read(out, "fg"), whole.labels["fg"], probs[0])
    top2 = np.sort(probs[1:], axis=0)
    clear = top2[-1] - top2[-2] > 1e-5
    np.testing.assert_array_equal(_read(out, "cells")[clear], whole.labels["cells"][clear])


@pytest.mark.parametrize("kind", ["hdf5", "tiff"])
def test_hdf5_and_tiff_inputs_give_the_zarr_result(run_3d_blocks, volume, tmp_path, kind):
    import h5py

    predictor = Predictor.from_run(run_3d_blocks)
    if kind == "hdf5":
        with h5py.File(tmp_path / "in.h5", "w") as f:
            f.create_dataset("raw", data=volume, chunks=(4, 32, 32)).attrs["axes"] = "zyx"
        source = tmp_path / "in.h5" / "raw"
    else:
        source = write_tiff(tmp_path / "in.tif", volume, axes="ZYX")
    reference = write_ome_zarr(tmp_path / "in.zarr", volume, chunks=(7, 32, 32))
    predict_blocks(predictor, reference, tmp_path / "ref.zarr", block_size=(8, 48, 48))
    predict_blocks(predictor, source, tmp_path / "out.zarr", block_size=(8, 48, 48))
    np.testing.assert_array_equal(_read(tmp_path / "out.zarr"), _read(tmp_path / "ref.zarr"))


@pytest.mark.parametrize(
    ("override", "says"),
    [({"tta": True}, "--no-tta"), ({"rescale": 2.0}, "--rescale off")],
)
def test_whole_image_settings_are_refused(run_3d_blocks, volume, tmp_path, override, says):
    source = write_ome_zarr(tmp_path / "in.zarr", volume)
    predictor = Predictor.from_run(run_3d_blocks, **override)
    with pytest.raises(BiosegError, match=says):
        predict_blocks(predictor, source, tmp_path / "out.zarr")
    assert not (tmp_path / "out.zarr").exists()


def test_memory_limit_sizes_the_blocks(run_3d_blocks, volume, tmp_path, monkeypatch):
    from bioseg.inference import blockwise
    from bioseg.io.lazy import open_lazy

    monkeypatch.setattr(blockwise, "process_bytes", lambda: 300 * 2**20)
    monkeypatch.setattr(blockwise, "network_bytes", lambda predictor, patch: 100 * 2**20)
    image, _ = open_lazy(write_ome_zarr(tmp_path / "in.zarr", volume, chunks=(8, 32, 32)), 3)
    predictor = Predictor.from_run(run_3d_blocks)
    shape = (190, 900, 770)  # the plan only: a volume of this size is never read

    def plan(limit, parallel=1):
        return blockwise.choose_plan(shape, predictor, None, limit, parallel, image)

    roomy = plan(8 * 2**30)
    assert roomy.block_size == (48, 192, 192)  # 8 tile steps: the most it takes
    fits = blockwise.block_bytes(plan_blocks_of(predictor, shape, 2), image, predictor)
    tight = plan(400 * 2**20 + fits)
    assert tight.block_size == (12, 48, 48)  # the largest that fits beside the model and the network
    assert plan(2 * (400 * 2**20 + fits), parallel=2).block_size == (12, 48, 48)  # shared by two processes
    with pytest.raises(BiosegError, match="--memory-limit 390 MiB is too small"):
        plan(390 * 2**20)


def plan_blocks_of(predictor, shape, steps):
    from bioseg.inference.block_plan import plan_blocks

    infer = predictor.infer
    return plan_blocks(shape, infer.patch_size, infer.overlap, None, tiles_per_block=steps)
