"""Instance workflows end to end: per-head targets, 3D training, patch sets, objects, fine-tuning."""

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from helpers import run_cli
from skimage.segmentation import find_boundaries

import bioseg
from bioseg import config
from bioseg.data.head_targets import make_head_targets
from bioseg.errors import BiosegError
from bioseg.io import write_tiff
from bioseg.workflows.tune_instances import tune_run

TINY_3D = [
    "train.epochs=1",
    "model.widths=[4,8]",
    "data.patch_size=[8,16,16]",
    "infer.patch_size=[8,32,32]",
    "data.batch_size=2",
    "data.patches_per_epoch=4",
    "train.snapshots=1",
]

INSTANCE_HEADS = {
    "foreground": {"type": "binary", "target": "foreground"},
    "boundaries": {"type": "binary", "target": "boundary", "weight_map": {"w0": 5.0, "sigma": 2.0}},
}


@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> Path:
    from bioseg.data.layouts import discover
    from bioseg.data.splits import make_splits
    from bioseg.demos.cells3d import write_cells_3d_dataset

    root = write_cells_3d_dataset(tmp_path_factory.mktemp("vol") / "data", 4, shape=(8, 32, 32), seed=0)
    make_splits(discover(root), folds=1, test_split=0.25, val_split=0.34, seed=0)
    return root


def instance_config(root: Path, out: Path, **extra) -> dict:
    return {
        "name": "inst",
        "output_dir": str(out),
        "data": {"root": str(root), "labels": "instance", "patch_size": [8, 16, 16]},
        "model": {"spatial_dims": 3},
        "heads": INSTANCE_HEADS,
        "post": {"instances": {"mode": "boundary", "h": 1.0}},
        **extra,
    }


def test_head_targets_from_instance_labels():
    labels = np.zeros((20, 24), np.int64)
    labels[2:10, 2:12], labels[2:10, 12:20], labels[12:18, 5:15] = 1, 2, 3
    cfg = config.from_dict(instance_config(Path("/d"), Path("/o"), data={"root": "/d", "labels": "instance"}, model={}))
    targets, weights = make_head_targets(labels, cfg)
    assert np.array_equal(targets["foreground"], labels > 0)
    assert np.array_equal(targets["boundaries"], find_boundaries(labels, mode="thick"))
    assert set(weights) == {"boundaries"}
    w = weights["boundaries"]
    assert w.shape == labels.shape and w.min() > 0
    assert w[5, 12] > w[15, 10]  # where two cells touch weighs more than inside a lone cell


def test_boundary_head_on_semantic_masks_uses_connected_components():
    mask = np.zeros((12, 12), np.int64)
    mask[1:5, 1:5], mask[7:11, 7:11] = 1, 1
    cfg = config.from_dict({"data": {"root": "/d"}, "heads": {"b": {"target": "boundary"}}})
    targets, _ = make_head_targets(mask, cfg)
    assert np.array_equal(targets["b"], find_boundaries(mask, mode="thick"))


def test_config_refuses_instances_without_a_boundary_head():
    with pytest.raises(BiosegError, match="needs a head with target boundary"):
        config.from_dict({"data": {"root": "/d"}, "post": {"instances": {"mode": "boundary"}}})
    with pytest.raises(BiosegError, match="needs type: binary"):
        config.from_dict({"data": {"root": "/d"}, "heads": {"b": {"type": "multiclass", "target": "boundary"}}})


def test_config_refuses_boundary_options_in_foreground_mode():
    heads = {"foreground": {"type": "binary", "target": "foreground"}, "b": {"type": "binary", "target": "boundary"}}

    def experiment(**instances):
        return config.from_dict({"data": {"root": "/d"}, "heads": heads, "post": {"instances": instances}})

    with pytest.raises(BiosegError, match="merge_threshold is not read in mode foreground") as err:
        experiment(mode="foreground", merge_threshold=0.3)
    assert "\n" not in str(err.value)
    with pytest.raises(BiosegError, match="agglomeration, beta are not read in mode foreground"):
        experiment(mode="foreground", agglomeration="multicut", beta=0.3)
    with pytest.raises(BiosegError, match="foreground_method is not read in mode boundary"):
        experiment(mode="boundary", foreground_method="components")
    with pytest.raises(BiosegError, match="max_size .* is below min_size"):
        experiment(mode="foreground", min_size=50, max_size=10)
    inst = experiment(mode="foreground", threshold=0.4, seed_method="min_distance", max_size=900).post.instances
    assert (inst.foreground_head, inst.boundary_head) == ("foreground", None)  # no boundary head resolved
    # a config that bioseg wrote holds every key, the boundary ones at their defaults: it loads again
    assert config.from_dict(config.to_dict(experiment(mode="foreground"))).post.instances.mode == "foreground"
    assert config.from_dict(config.to_dict(experiment()), overrides=["post.instances.mode=foreground"])


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


def test_3d_instance_training_predicts_and_scores_objects(volumes, tmp_path, capsys):
    result = bioseg.train(instance_config(volumes, tmp_path), overrides=TINY_3D, progress=False)
    assert {"val/foreground/dice/foreground", "val/boundaries/dice/boundary"} <= set(result.history[-1])
    evaluation = bioseg.evaluate(result.run_dir, split="test", progress=False)
    out = evaluation.out_dir
    table = json.loads((out / "metrics_instances.json").read_text())["table"]
    assert [round(r["threshold"], 1) for r in table] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert (out / "f1_vs_iou.png").is_file() and set(evaluation.heads) == {"foreground", "boundaries"}
    stem = Path(evaluation.per_image[0]["image"]).name
    objects = tifffile.imread(out / f"{stem}_instances.tif")
    assert objects.shape == (8, 32, 32) and objects.dtype == np.int32
    prob = tifffile.imread(out / f"{stem}_boundaries_prob.tif")
    assert prob.shape == (1, 8, 32, 32)
    # the same objects again from the saved probability map, through the command line
    assert run_cli("instances", out / f"{stem}_boundaries_prob.tif", "-o", tmp_path / "again", "--h", "1") == 0
    assert tifffile.imread(tmp_path / "again" / f"{stem}_boundaries_instances.tif").shape == (8, 32, 32)
    # post-processing tuned on the validation volume and written into the run: predict then uses it
    capsys.readouterr()
    assert run_cli("tune-instances", result.run_dir, "--split", "val", "--apply", "--no-progress") == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 55 and sum("<- chosen" in line for line in printed) == 1
    tuning = json.loads((result.run_dir / "instances_tuning.json").read_text())
    assert set(tuning["chosen"]) == {"threshold", "h", "sigma_seeds", "merge_threshold"} and len(tuning["tried"]) == 54
    assert max(r["f1"] for r in tuning["tried"]) == next(
        r["f1"] for r in tuning["tried"] if all(r[k] == v for k, v in tuning["chosen"].items())
    )
    used = bioseg.Predictor.from_run(result.run_dir).cfg.post.instances
    assert {k: getattr(used, k) for k in tuning["chosen"]} == tuning["chosen"]
    meta = json.loads((result.run_dir / "model" / "model.json").read_text())
    assert meta["post"] == meta["experiment"]["post"]  # the summary beside the experiment follows it
    with pytest.raises(BiosegError, match="split 'nope'"):
        tune_run(result.run_dir, split="nope", progress=False)


def test_patch_set_is_written_once_and_trained_on(volumes, tmp_path):
    cfg_path = tmp_path / "exp.yaml"
    config.dump(config.from_dict(instance_config(volumes, tmp_path)), cfg_path)
    sets = [x for s in TINY_3D for x in ("--set", s)]
    assert run_cli("patches", cfg_path, "-o", tmp_path / "patches", "--per-image", "3", "--no-progress", *sets) == 0
    assert len(list((tmp_path / "patches").glob("patch_*.npz"))) == 3 * 2  # two training volumes
    with np.load(tmp_path / "patches" / "patch_000000.npz") as patch:
        assert set(patch.files) == {"image", "target/foreground", "target/boundaries", "weight/boundaries"}
    sets += ["--set", f"data.patch_set={tmp_path / 'patches'}"]
    assert run_cli("train", cfg_path, "--no-progress", *sets) == 0
    # a config whose heads no longer match the stored targets is refused
    other = [*sets, "--set", "heads.boundaries.boundary.mode=inner", "--set", "name=other"]
    assert run_cli("train", cfg_path, "--no-progress", *other) == 2


def test_fine_tuning_a_one_channel_run_on_two_channel_images(cells_dir, tmp_path):
    from helpers import TINY

    first = bioseg.train(
        {"name": "one", "output_dir": str(tmp_path), "data": {"root": str(cells_dir)}}, overrides=TINY, progress=False
    )
    two = tmp_path / "two"
    for sub in ("masks", "splits"):
        (two / sub).mkdir(parents=True)
        for f in (cells_dir / sub).iterdir():
            (two / sub / f.name).write_bytes(f.read_bytes())
    from bioseg.io import read_image

    for f in (cells_dir / "images").iterdir():
        image = read_image(f)[0]
        write_tiff(two / "images" / f"{f.stem}.tif", np.stack([image, image]), axes="CYX")
    cfg = {
        "name": "two",
        "output_dir": str(tmp_path),
        "data": {"root": str(two), "in_channels": 2},
        "model": {"init_from": str(first.run_dir)},
    }
    result = bioseg.train(cfg, overrides=TINY, progress=False)
    assert "adapted 1" in result.init_report and "1 → 2 input channels" in result.init_report
    report = json.loads((result.run_dir / "init_report.json").read_text())
    assert report["loaded"] and not report["skipped"]
