"""Choosing post.instances parameters on labelled images."""

import numpy as np
import pytest
from skimage.segmentation import find_boundaries

from bioseg import config
from bioseg.errors import BiosegError
from bioseg.inference.instances import predict_instances
from bioseg.metrics.instance import match_instances
from bioseg.workflows.tune_instances import default_grid, parse_grid, tune_instances

HEADS = {
    "foreground": {"type": "binary", "target": "foreground"},
    "boundaries": {"type": "binary", "target": "boundary"},
}


def experiment(**instances):
    post = {"instances": {"mode": "boundary", "threshold": 0.3, "h": 1.0, **instances}}
    return config.from_dict({"data": {"root": "/d", "labels": "instance"}, "heads": HEADS, "post": post})


def cells_with_a_faint_wall() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A 4 × 4 grid of 16-px cells whose walls read 0.9, except one wall between cells 1 and 2 at 0.4."""
    truth = (np.arange(64)[:, None] // 16 * 4 + np.arange(64)[None, :] // 16 + 1).astype(np.int32)
    walls = find_boundaries(truth, mode="thick").astype(np.float32) * 0.9
    faint = walls.copy()
    faint[:15, 15:17] = np.where(walls[:15, 15:17] > 0, 0.4, 0.0)  # the wall between cells 1 and 2
    probs = {"foreground": np.ones((1, 64, 64), np.float32), "boundaries": faint[None]}
    return probs, truth


def test_the_point_that_splits_the_objects_wins():
    probs, truth = cells_with_a_faint_wall()
    cfg = experiment()
    best, tried = tune_instances([probs], [truth], cfg, grid={"merge_threshold": (0.7, 0.5, 0.3)})
    assert best == {"merge_threshold": 0.3}
    by_value = {row["merge_threshold"]: row for row in tried}
    assert by_value[0.3]["f1"] == pytest.approx(1.0)
    assert by_value[0.5]["f1"] < 1.0 and by_value[0.5]["n_pred"] == 15  # the faint wall merged two cells
    # the reported score is what the chosen parameters give when the pipeline runs on its own
    cfg.post.instances.merge_threshold = 0.3
    assert match_instances(predict_instances(probs, cfg), truth).at(0.5)["f1"] == pytest.approx(1.0)
    assert cfg.post.instances.threshold == 0.3  # the caller's config is left as it was given


def test_default_grid_follows_the_mode_in_voxels():
    grid = default_grid(experiment())
    assert grid["h"] == (1.0, 2.0, 4.0) and "merge_threshold" in grid and "beta" not in grid
    assert grid["sigma_seeds"] == (0.5, 1.0, 2.0)
    assert grid["threshold"] == (0.3, 0.5, 0.7)  # boundary maps may cover much of each object
    assert "beta" in default_grid(experiment(agglomeration="multicut"))
    assert set(default_grid(experiment(mode="foreground"))) == {"threshold", "h", "sigma_seeds"}
    peaks = experiment(mode="foreground", seed_method="min_distance")
    assert set(default_grid(peaks)) == {"threshold", "min_distance", "sigma_seeds"}
    assert set(default_grid(experiment(mode="foreground", foreground_method="components"))) == {"threshold"}


def test_lengths_in_the_grid_may_say_their_unit():
    probs, truth = cells_with_a_faint_wall()
    best, tried = tune_instances([probs], [truth], experiment(), [(0.5, 0.5)], grid={"h": ("1 um", 2.0, 3.0)})
    assert [row["h"] for row in tried] == ["1 um", 2.0, 3.0]
    assert tried[0]["f1"] == tried[1]["f1"]  # 1 µm of 0.5 µm pixels: the same 2 voxels


def test_bad_requests_are_refused_with_the_fix():
    probs, truth = cells_with_a_faint_wall()
    with pytest.raises(BiosegError, match="not a post.instances parameter"):
        tune_instances([probs], [truth], experiment(), grid={"merge_treshold": (0.3,)})
    with pytest.raises(BiosegError, match="cannot tune: merge_threshold is not read in mode foreground"):
        tune_instances([probs], [truth], experiment(mode="foreground"), grid={"merge_threshold": (0.3,)})
    with pytest.raises(BiosegError, match="one labelled image per prediction"):
        tune_instances([probs, probs], [truth], experiment())
    with pytest.raises(BiosegError, match="set it to 'boundary' or 'foreground'"):
        default_grid(experiment(mode="off"))


def test_a_grid_written_on_the_command_line_is_read_and_checked_like_the_config():
    inst = experiment().post.instances
    grid = parse_grid(["h=1, 2.5,4", "sigma_seeds=0.5 um,1 µm", "threshold = 0.4,0.6"], inst)
    assert grid == {"h": (1, 2.5, 4), "sigma_seeds": ("0.5 um", "1 um"), "threshold": (0.4, 0.6)}
    assert parse_grid(["min_distance=2,3 voxels"], inst) == {"min_distance": (2, 3)}
    refused = {
        "h": "expected NAME=V1,V2",
        "h=": "expected NAME=V1,V2",
        "hh=1": "hh is not a post.instances parameter",
        "h=-1": "--grid h=-1: a length > 0 is needed",
        "h=2 furlongs": "unknown unit",
        "min_distance=2.5": "whole number of voxels",
    }
    for text, message in refused.items():
        with pytest.raises(BiosegError, match=message):
            parse_grid([text], inst)
    with pytest.raises(BiosegError, match="names h twice"):
        parse_grid(["h=1", "h=2"], inst)
