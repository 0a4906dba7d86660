"""predict and evaluate through the command line, and the user errors a prediction can meet."""

import json
import shutil

import numpy as np
import pytest
import tifffile
from helpers import run_cli

from bioseg.io import read_image, write_png


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


def test_evaluate_predicts_in_the_precision_asked_for(trained, tmp_path, capsys):
    _, run = trained
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        assert run_cli("evaluate", run, "--precision", precision, "-o", out, "--no-progress") == 0
        assert json.loads((out / "metrics.json").read_text())["precision"] == precision
    capsys.readouterr()
    assert run_cli("evaluate", run, "--precision", "fp8", "-o", tmp_path / "bad", "--no-progress") == 2
    assert "precision" in capsys.readouterr().err
    assert run_cli("evaluate", tmp_path / "fp32", tmp_path, "--precision", "fp32") == 2
    assert "--precision applies to a run folder" in capsys.readouterr().err


def test_evaluate_leaves_out_only_the_declared_background_and_says_so(trained, cells_dir, tmp_path, capsys):
    from bioseg.nn.bundle import ModelBundle

    _, run = trained
    shutil.copytree(run, tmp_path / "run")
    bundle = ModelBundle.load(tmp_path / "run")
    cfg = bundle.cfg.model_copy(deep=True)
    cfg.data.background_class = None
    bundle.update_experiment(cfg)
    capsys.readouterr()
    assert run_cli("evaluate", tmp_path / "run", "-o", tmp_path / "every", "--no-progress") == 0
    printed = capsys.readouterr().out
    assert "Dice and IoU are means over all 2 classes 0–1 (background, foreground); no background class" in printed
    doc = json.loads((tmp_path / "every" / "metrics.json").read_text())
    scores = doc["dataset"]
    assert doc["background_class"] is None
    assert scores["dice_mean"] == pytest.approx((scores["dice/background"] + scores["dice/foreground"]) / 2)
    assert run_cli("evaluate", run, "-o", tmp_path / "declared", "--no-progress") == 0
    assert "means over class 1 (foreground); background class 0 (background) left out" in capsys.readouterr().out
    declared = json.loads((tmp_path / "declared" / "metrics.json").read_text())
    assert declared["dataset"]["dice_mean"] == declared["dataset"]["dice/foreground"]
    # folders of predictions: class 0 unless told otherwise
    gt = tmp_path / "gt"
    gt.mkdir()
    for row in (tmp_path / "declared" / "per_image.csv").read_text().splitlines()[1:]:
        name = row.split(",")[0]
        (gt / f"{name}.png").write_bytes((cells_dir / "masks" / f"{name}.png").read_bytes())
    out = tmp_path / "folder"
    assert run_cli("evaluate", tmp_path / "declared", gt, "-o", out, "--background-class", "none") == 0
    assert json.loads((out / "metrics.json").read_text())["dataset"]["dice_mean"] == pytest.approx(scores["dice_mean"])


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


def test_training_stores_object_sizes_and_predict_rescales_by_them(trained, cells_dir, tmp_path, capsys):
    from bioseg.data.dataset import read_label_mask
    from bioseg.data.object_sizes import training_object_sizes
    from bioseg.data.splits import load_split
    from bioseg.nn.bundle import ModelBundle

    _, run = trained
    bundle = ModelBundle.load(run)
    names = load_split(cells_dir / "splits", 0)["train"]
    masks = [read_label_mask(cells_dir / "masks" / f"{n}.png", bundle.cfg) for n in names]
    measured = training_object_sizes(masks, instance=False)  # on the training split
    assert {k: bundle.objects[k] for k in measured} == measured and bundle.objects["count"] > 0
    assert set(bundle.objects["predicted_depth_diameter_px"]) == {"p10", "median", "p90"}
    check = bundle.objects["size_model"]["check"]  # the size model, measured against the first pass
    assert set(check["median_factor_error"]) == {"size_model", "first_pass"} and check["images"] > 0
    errors = check["median_factor_error"]
    assert bundle.objects["size_model"]["use"] == (errors["size_model"] < errors["first_pass"])
    src = sorted((cells_dir / "images").iterdir())[0]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / src.name).write_bytes(src.read_bytes())
    out = tmp_path / "out"
    assert run_cli("predict", run, tmp_path / "in", "-o", out, "--rescale", "2", "--no-progress") == 0
    rows = (out / "rescale.csv").read_text().splitlines()
    assert rows[0] == "image,object_size_px,scale" and rows[1].endswith(",2.0000")
    assert "rescaled by 2" in capsys.readouterr().err
    labels = tifffile.imread(out / f"{src.stem}_labels.tif")
    assert labels.shape == read_image(src, spatial_dims=2).shape[1:]  # mapped back to the image's own size
    assert run_cli("evaluate", run, "--rescale", "auto", "--no-progress", "-o", tmp_path / "ev") == 0
    assert "rescale" in json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert "scale" in (tmp_path / "ev" / "per_image.csv").read_text().splitlines()[0]
