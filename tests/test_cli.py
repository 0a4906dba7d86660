"""End to end through the command line on tiny synthetic data, including the user-error paths."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml
from helpers import TINY, run_cli

from bioseg.io import write_png


@pytest.fixture(scope="module")
def trained(cells_dir: Path, tmp_path_factory) -> tuple[Path, Path]:
    """A config from init-config and one tiny trained run: (config path, run folder)."""
    work = tmp_path_factory.mktemp("work")
    cfg = work / "exp.yaml"
    assert run_cli("init-config", cells_dir, "-o", cfg, "--name", "tiny") == 0
    sets = [x for s in TINY for x in ("--set", s)]
    assert run_cli("train", cfg, "--no-progress", *sets, "--set", "train.epochs=2") == 0
    return cfg, work / "runs" / "tiny" / "fold_0"


def test_check_reports_a_usable_dataset(cells_dir, capsys):
    assert run_cli("check", cells_dir, "--classes", "2") == 0
    out = capsys.readouterr().out
    assert "10" in out


def test_check_lists_every_problem_and_fails(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name in ("a", "b"):
        write_png(
            tmp_path / "images" / f"{name}.png", np.full((8, 8), 9, np.uint8) + np.eye(8, dtype=np.uint8)
        )
        write_png(tmp_path / "masks" / f"{name}.png", (np.eye(8) * 255).astype(np.uint8))
    write_png(tmp_path / "images" / "orphan.png", np.zeros((8, 8), np.uint8) + np.eye(8, dtype=np.uint8))
    assert run_cli("check", tmp_path, "--classes", "2") == 1
    out = capsys.readouterr().out
    assert "orphan" in out
    assert "masks/a.png" in out and "masks/b.png" in out and "mask_values" in out


def test_init_config_infers_classes_and_mapping(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        write_png(tmp_path / "images" / f"{i}.png", rng.integers(0, 255, (40, 50), dtype=np.uint8))
        write_png(
            tmp_path / "masks" / f"{i}.png", np.where(rng.random((40, 50)) > 0.5, 255, 0).astype(np.uint8)
        )
    assert run_cli("init-config", tmp_path, "-o", tmp_path / "exp.yaml") == 0
    text = (tmp_path / "exp.yaml").read_text()
    assert text.startswith("#") and "\n# Dataset" in text
    cfg = yaml.safe_load(text)
    assert cfg["data"]["mask_values"] == {0: 0, 255: 1}
    assert cfg["data"]["patch_size"] == [40, 48]  # smallest size, down to a multiple of 8
    assert run_cli("init-config", tmp_path, "-o", tmp_path / "exp.yaml") == 2  # no silent overwrite


def test_train_writes_a_complete_run_folder(trained):
    _, run = trained
    for part in (
        "config.yaml",
        "model/weights.safetensors",
        "model/model.json",
        "checkpoints/last.ckpt",
        "metrics.csv",
        "charts/loss.png",
        "charts/dice.png",
    ):
        assert (run / part).is_file(), part
    assert list((run / "charts" / "snapshots").glob("*.png"))
    meta = json.loads((run / "model" / "model.json").read_text())
    assert meta["classes"] == ["background", "foreground"] and meta["model"]["in_channels"] == 1
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and "val/dice_mean" in rows[0]
    # last.ckpt is the latest epoch (what --resume continues from), whichever epoch was best
    assert torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] == 1


def test_training_again_without_resume_is_refused(trained, capsys):
    cfg, _ = trained
    sets = [x for s in TINY for x in ("--set", s)]
    assert run_cli("train", cfg, "--no-progress", *sets) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and len(err.strip().splitlines()) == 1


def test_resume_continues_and_keeps_history(trained):
    cfg, run = trained
    sets = [x for s in TINY for x in ("--set", s)]
    assert run_cli("train", cfg, "--no-progress", "--resume", *sets, "--set", "train.epochs=3") == 0
    lines = (run / "metrics.csv").read_text().splitlines()
    epochs = [float(line.split(",")[0]) for line in lines[1:]]
    assert epochs == [0.0, 1.0, 2.0]


def test_predict_any_size_writes_three_files(trained, tmp_path):
    _, run = trained
    rng = np.random.default_rng(1)
    write_png(tmp_path / "in" / "odd.png", rng.integers(0, 255, (45, 37), dtype=np.uint8))
    write_png(tmp_path / "in" / "big.png", rng.integers(0, 255, (70, 90), dtype=np.uint8))
    assert run_cli("predict", run, tmp_path / "in", "-o", tmp_path / "out", "--no-progress") == 0
    prob = tifffile.imread(tmp_path / "out" / "odd_prob.tif")
    labels = tifffile.imread(tmp_path / "out" / "odd_labels.tif")
    assert prob.shape == (1, 45, 37) and prob.dtype == np.float32 and 0 <= prob.min() <= prob.max() <= 1
    assert labels.shape == (45, 37) and set(np.unique(labels)) <= {0, 1}
    assert np.array_equal(labels, (prob[0] > 0.5).astype(labels.dtype))
    assert (tmp_path / "out" / "big_overlay.png").is_file()


def test_evaluate_run_and_folders_agree(trained, cells_dir, tmp_path, capsys):
    _, run = trained
    assert run_cli("evaluate", run, "--split", "test", "--no-progress") == 0
    metrics = json.loads((run / "predictions" / "test" / "metrics.json").read_text())
    assert metrics["n_images"] == 2
    assert {"dice/foreground", "iou/background", "dice_mean", "accuracy"} <= set(metrics["dataset"])
    per_image = (run / "predictions" / "test" / "per_image.csv").read_text().splitlines()
    assert len(per_image) == 3
    # the same predictions scored as folders give the same numbers
    assert (
        run_cli("evaluate", run / "predictions" / "test", cells_dir / "masks", "-o", tmp_path) == 2
    )  # masks without predictions
    names = [line.split(",")[0] for line in per_image[1:]]
    gt = tmp_path / "gt"
    gt.mkdir()
    for n in names:
        (gt / f"{n}.png").write_bytes((cells_dir / "masks" / f"{n}.png").read_bytes())
    assert (
        run_cli("evaluate", run / "predictions" / "test", gt, "-o", tmp_path / "scores", "--classes", "2")
        == 0
    )
    again = json.loads((tmp_path / "scores" / "metrics.json").read_text())
    assert again["dataset"]["dice_mean"] == pytest.approx(metrics["dataset"]["dice_mean"])


@pytest.mark.parametrize(
    "args, expected",
    [
        (["train", "missing.yaml"], "does not exist"),
        (["check", "/no/such/folder"], "does not exist"),
        (["predict", "/no/such/run", "x.png"], "does not exist"),
    ],
)
def test_user_errors_are_one_line_with_exit_2(args, expected, capsys):
    assert run_cli(*args) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_config_typo_is_one_line(trained, tmp_path, capsys):
    cfg, _ = trained
    raw = yaml.safe_load(cfg.read_text())
    raw["train"]["epoch"] = 3
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(raw))
    assert run_cli("train", tmp_path / "typo.yaml") == 2
    err = capsys.readouterr().err.strip()
    assert (
        "unknown key 'train.epoch'" in err and "Did you mean 'epochs'?" in err and len(err.splitlines()) == 1
    )


def test_check_with_a_config_typo_is_one_line_and_reads_nothing(cells_dir, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    loss = [{"name": "bce", "pos_wieght": 3}, {"name": "dice"}]
    bad.write_text(yaml.safe_dump({"data": {"root": str(cells_dir)}, "heads": {"mask": {"loss": loss}}}))
    assert run_cli("check", cells_dir, "-c", bad) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "no option 'pos_wieght'" in err and "Did you mean 'pos_weight'?" in err
    assert captured.out == ""  # answered before the dataset was looked at
    # and before torch is imported: the answer is quick
    code = (
        "import atexit, sys; atexit.register(lambda: print('torch' in sys.modules)); "
        f"sys.argv = ['bioseg', 'check', {str(cells_dir)!r}, '-c', {str(bad)!r}]; "
        "from bioseg.cli import main; main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout.strip() == "False"


def test_predict_with_wrong_channel_count(trained, tmp_path, capsys):
    _, run = trained
    write_png(tmp_path / "rgb.png", np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    assert run_cli("predict", run, tmp_path / "rgb.png", "-o", tmp_path / "out", "--no-progress") == 2
    err = capsys.readouterr().err
    assert "3 channel(s)" in err and "expects 1" in err
    assert not (tmp_path / "out" / "rgb_labels.tif").exists()


def test_predict_refuses_an_image_with_nan(trained, tmp_path, capsys):
    _, run = trained
    image = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    image[3, 4:9] = np.nan
    tifffile.imwrite(tmp_path / "holes.tif", image)
    assert run_cli("predict", run, tmp_path / "holes.tif", "-o", tmp_path / "out", "--no-progress") == 2
    assert "holds 5 NaN or infinite value(s)" in capsys.readouterr().err
    assert not (tmp_path / "out" / "holes_labels.tif").exists()


def test_weights_from_another_model(trained, tmp_path, capsys):
    import shutil

    from safetensors.torch import save_file

    from bioseg.nn import create_model

    _, run = trained
    other = tmp_path / "run"
    shutil.copytree(run / "model", other / "model")
    net = create_model("unet", spatial_dims=2, in_channels=1, heads={"mask": 1}, widths=[4, 8, 16])
    save_file(
        {k: v.contiguous() for k, v in net.state_dict().items()}, str(other / "model" / "weights.safetensors")
    )
    assert (
        run_cli("predict", other, tmp_path / "x.png", "-o", tmp_path / "o") == 2
    )  # input missing is checked later
    write_png(tmp_path / "x.png", np.zeros((32, 32), np.uint8))
    capsys.readouterr()
    assert run_cli("predict", other, tmp_path / "x.png", "-o", tmp_path / "o") == 2
    assert "another model" in capsys.readouterr().err


def test_help_is_light_and_lists_defaults():
    code = "import sys, bioseg.cli; print('torch' in sys.modules, 'lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    result = subprocess.run(
        [sys.executable, "-m", "bioseg", "predict", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "--overlap" in result.stdout and "--threshold" in result.stdout
