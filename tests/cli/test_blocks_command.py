"""``bioseg predict-blocks``: writes the store, says what it did, resumes, refuses other settings and
bad options in one line with exit code 2; a local cluster of worker processes gives the same store."""

import numpy as np
import zarr
from helpers import run_cli

from bioseg.io.zarr_io import write_ome_zarr


def test_predict_blocks_then_resume_then_refuse(run_3d_blocks, volume, tmp_path, capsys):
    source = write_ome_zarr(tmp_path / "in.zarr", volume, chunks=(8, 32, 32))
    out = tmp_path / "out.zarr"
    args = ["predict-blocks", run_3d_blocks, source, "-o", out, "--block-size", "8,48,48"]
    assert run_cli(*args, "--instances", "foreground") == 0
    said = capsys.readouterr().out
    assert "12 blocks of 8x48x48: 12 predicted, 0 already done" in said and " objects" in said
    objects = zarr.open_array(str(out / "labels" / "objects" / "0"))[...]
    assert objects.max() < 2**32 and objects.max() == len(np.unique(objects)) - 1  # numbered 1..N
    assert run_cli(*args, "--instances", "foreground") == 0
    assert "0 predicted, 12 already done" in capsys.readouterr().out
    assert run_cli(*args, "--instances", "foreground", "--halo", "3") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "other settings (halo differs)" in err
    assert run_cli(*args, "--block-size", "8,x") == 2
    assert "not a size" in capsys.readouterr().err


def test_workers_give_the_threaded_result(run_3d_blocks, volume, tmp_path):
    source = write_ome_zarr(tmp_path / "in.zarr", volume, chunks=(8, 32, 32))
    common = [run_3d_blocks, source, "--block-size", "10,48,40", "--instances", "off"]
    assert run_cli("predict-blocks", *common, "-o", tmp_path / "a.zarr") == 0
    assert run_cli("predict-blocks", *common, "-o", tmp_path / "b.zarr", "--workers", "2", "--memory-limit", "2GB") == 0
    a, b = (zarr.open_array(str(tmp_path / n / "0"))[...] for n in ("a.zarr", "b.zarr"))
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
