"""The instances command: every post.instances option, validated through the config model."""

from pathlib import Path

import numpy as np
import pytest
import tifffile
from helpers import run_cli

from bioseg.io import write_tiff


def objects_map(path: Path) -> Path:
    """A foreground map with a disc (444 voxels once split) touching a small disc (102), and a lone
    30 × 30 square (900)."""
    yy, xx = np.indices((64, 96))
    big = (yy - 20) ** 2 + (xx - 20) ** 2 < 12**2
    small = (yy - 20) ** 2 + (xx - 37) ** 2 < 6**2
    square = (yy >= 34) & (yy < 64) & (xx >= 60) & (xx < 90)
    write_tiff(path, np.where(big | small | square, 0.9, 0.1).astype(np.float32)[None])
    return path


def test_instances_command_in_foreground_mode(tmp_path, capsys):
    prob = objects_map(tmp_path / "cells_prob.tif")

    def objects(*options) -> np.ndarray:
        out = tmp_path / str(len(list(tmp_path.iterdir())))
        assert run_cli("instances", prob, "-o", out, "--mode", "foreground", *options) == 0
        return tifffile.imread(out / "cells_instances.tif")

    small, big, square = (20, 37), (20, 20), (50, 75)
    labels = objects()
    assert labels.max() == 3 and len({labels[small], labels[big], labels[square]}) == 3  # the discs are split
    assert objects("--foreground-method", "components").max() == 2
    capped = objects("--max-size", "800")
    assert capped.max() == 2 and capped[square] == 0 and capped[big] > 0
    merged = objects("--min-size", "150")
    assert merged.max() == 2 and merged[small] == merged[big] > 0 and merged[square] > 0
    removed = objects("--min-size", "150", "--small-objects", "remove")
    assert removed.max() == 2 and removed[small] == 0 and removed[big] > 0
    assert objects("--h", "5").max() == 2  # the small disc's peak is no seed of dynamic 5
    # 5 voxels whatever the voxel size; 2.5 µm of 0.5 µm voxels are 5 voxels too
    np.testing.assert_array_equal(objects("--h", "5", "--spacing", "0.5,0.5"), objects("--h", "5"))
    np.testing.assert_array_equal(objects("--h", "2.5 um", "--spacing", "0.5,0.5"), objects("--h", "5 voxels"))
    # peaks 2 voxels apart on the raw distance cut the square along the diagonals of its distance map
    assert objects("--seed-method", "min_distance", "--min-distance", "2", "--sigma-seeds", "0").max() > 3


@pytest.mark.parametrize(
    "options, message",
    [
        (["--mode", "foreground", "--merge-threshold", "0.3"], "--merge-threshold is not read in --mode foreground"),
        (["--mode", "foreground", "--no-weight-by-size"], "--weight-by-size is not read in --mode foreground"),
        (["--mode", "foreground", "--foreground-method", "components", "--h", "2"], "--h is not read"),
        (["--foreground-method", "components"], "--foreground-method is not read in --mode boundary"),
        (["--threshold", "1.5"], "--threshold 1.5: Input should be less than 1"),
        (["--seed-method", "hmaxima"], "--seed-method 'hmaxima': Input should be 'h_maxima' or 'min_distance'"),
        (["--min-size", "50", "--max-size", "10"], "--max-size (10) is below --min-size (50)"),
        (["--mode", "off"], "--mode 'off' is not one of boundary, foreground"),
        (["--spacing", "2,x"], "--spacing '2,x' is not a voxel size"),
        (["--h", "1 um"], "h is '1 um', a length in micrometres, but no voxel size is known for this image"),
        (["--h", "1 parsec"], "--h '1 parsec': unknown unit 'parsec'"),
        (["--min-distance", "2.5"], "--min-distance '2.5': a whole number of voxels is needed, e.g. 2"),
    ],
)
def test_instances_command_refuses_bad_options_in_one_line(tmp_path, capsys, options, message):
    prob = objects_map(tmp_path / "cells_prob.tif")
    capsys.readouterr()
    assert run_cli("instances", prob, "-o", tmp_path / "out", *options) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_instances_help_reads_the_config_fields(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # one line per option
    assert run_cli("instances", "--help") == 0
    shown = capsys.readouterr().out
    for flag in ("--sigma-seeds", "--small-objects", "--foreground-method", "--no-weight-by-size", "--max-size"):
        assert flag in shown
    assert "[default: (no limit)]" in shown and "[default: (h_maxima)]" in shown
