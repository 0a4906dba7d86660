"""Training behaviour through the Python API: NaN stop, reproducibility, schedulers, the real EM data."""

import json
from pathlib import Path

import pytest
import torch
from helpers import INSTANCE_HEADS, TINY, dataset_dir, run_cli

import bioseg
from bioseg.engine.module import warmup_then
from bioseg.errors import BiosegError
from bioseg.losses.composite import CompositeLoss


def tiny_config(root: Path, out: Path, name: str = "t") -> dict:
    return {"name": name, "output_dir": str(out), "data": {"root": str(root)}}


def test_nan_loss_stops_with_step_and_last_checkpoint(cells_dir, tmp_path, monkeypatch):
    real_forward = CompositeLoss.forward
    calls = {"n": 0}

    def poisoned(self, outputs, targets, weights=None):
        total, logs = real_forward(self, outputs, targets, weights)
        if self.training:
            calls["n"] += 1
            if calls["n"] > 2:  # after the first epoch (2 steps) has been checkpointed
                total = total * float("nan")
        return total, logs

    monkeypatch.setattr(CompositeLoss, "forward", poisoned)
    with pytest.raises(BiosegError) as err:
        bioseg.train(tiny_config(cells_dir, tmp_path), overrides=[*TINY, "train.epochs=3"], progress=False)
    message = str(err.value)
    assert "became nan at step 2" in message and "last.ckpt" in message and "--resume" in message


def test_same_seed_same_weights(cells_dir, tmp_path):
    results = [
        bioseg.train(tiny_config(cells_dir, tmp_path, name=f"r{i}"), overrides=TINY, progress=False) for i in range(2)
    ]
    from safetensors.torch import load_file

    a, b = (load_file(str(r.model_dir / "weights.safetensors")) for r in results)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_warmup_then_cosine_schedule():
    f = warmup_then(warmup=4, total=20, cosine=True, floor=0.1)
    factors = [f(s) for s in range(21)]
    assert factors[0] < factors[3] < 1.0
    assert factors[4] == pytest.approx(1.0)
    assert factors[20] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(factors[4:], factors[5:], strict=False))
    assert warmup_then(0, 10, cosine=False, floor=0.0)(7) == 1.0


def _configured(tmp_path, overrides: list[str], steps: int = 20):
    """``configure_optimizers`` of a module whose trainer will take ``steps`` optimiser steps."""
    from types import SimpleNamespace

    from bioseg import config
    from bioseg.engine.module import SegmentationModule

    cfg = config.from_dict({"data": {"root": str(tmp_path)}}, overrides=["model.widths=[4,8]", *overrides])
    module = SegmentationModule(config.to_dict(cfg))
    module.trainer = SimpleNamespace(estimated_stepping_batches=steps)
    return module.configure_optimizers()


@pytest.mark.parametrize(
    ("name", "kind", "group"),
    [
        ("adamw", torch.optim.AdamW, {"weight_decay": 0.01}),
        ("adam", torch.optim.Adam, {"weight_decay": 0.01}),
        ("sgd", torch.optim.SGD, {"momentum": 0.8, "nesterov": True, "weight_decay": 0.01}),
    ],
)
def test_the_optimiser_and_its_settings(tmp_path, name, kind, group):
    setup = _configured(tmp_path, [f"optim.name={name}", "optim.lr=0.003", "optim.weight_decay=0.01",
                                   "optim.momentum=0.8"])  # fmt: skip
    opt = setup["optimizer"]
    assert type(opt) is kind  # AdamW is not an Adam subclass: the exact type is checked
    assert opt.param_groups[0]["initial_lr"] == pytest.approx(0.003)  # the schedule scales it from there
    assert {k: opt.param_groups[0][k] for k in group} == group


def _lrs(setup, steps: int) -> list[float]:
    opt, sched = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_cosine_schedule_warms_up_then_decays_to_min_lr(tmp_path):
    setup = _configured(tmp_path, ["sched.name=cosine", "train.epochs=4", "sched.warmup_epochs=1",
                                   "optim.lr=0.01", "sched.min_lr=0.0001"])  # fmt: skip
    assert setup["lr_scheduler"]["interval"] == "step"
    lrs = _lrs(setup, 21)
    assert lrs[0] < lrs[4] < 0.01 and lrs[5] == pytest.approx(0.01)  # 5 warm-up steps of 20: one epoch
    assert all(a >= b for a, b in zip(lrs[5:], lrs[6:], strict=False))
    assert lrs[20] == pytest.approx(0.0001)


def test_constant_schedule_keeps_the_rate(tmp_path):
    lrs = _lrs(_configured(tmp_path, ["sched.name=none", "sched.warmup_epochs=0", "optim.lr=0.01"]), 20)
    assert lrs == [pytest.approx(0.01)] * 20


def test_onecycle_rises_to_the_rate_then_falls(tmp_path):
    lrs = _lrs(_configured(tmp_path, ["sched.name=onecycle", "optim.lr=0.01"]), 20)
    peak = max(range(20), key=lrs.__getitem__)
    assert lrs[0] < 0.001 and lrs[peak] == pytest.approx(0.01, rel=0.05) and 3 <= peak <= 8 and lrs[-1] < 0.001


def test_plateau_schedule_lowers_the_rate_when_the_metric_stalls(tmp_path):
    setup = _configured(tmp_path, ["sched.name=plateau", "sched.patience=2", "sched.factor=0.5", "optim.lr=0.01"])
    assert setup["lr_scheduler"]["monitor"] == "val/dice_mean"
    opt, sched = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    for _ in range(3):  # an improvement, then three epochs without: patience 2 is exceeded
        sched.step(0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)
    sched.step(0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.005)


@pytest.mark.parametrize(("accumulate", "steps"), [(1, 4), (2, 2)])
def test_accumulation_sets_the_number_of_optimiser_steps(cells_dir, tmp_path, accumulate, steps):
    # TINY: 8 patches per epoch in batches of 4 → 2 batches per epoch; 2 epochs
    result = bioseg.train(
        tiny_config(cells_dir, tmp_path),
        overrides=[*TINY, "train.epochs=2", "train.precision=32", f"train.accumulate_grad_batches={accumulate}"],
        progress=False,
    )
    last = torch.load(result.run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == steps


@pytest.mark.parametrize(("precision", "dtype"), [("bf16-mixed", torch.bfloat16), ("32", None)])
def test_training_precision_is_the_dtype_the_forward_runs_in(cells_dir, tmp_path, monkeypatch, precision, dtype):
    from bioseg.engine.module import SegmentationModule

    seen = []
    real_step = SegmentationModule.training_step

    def recording(self, batch, batch_idx):
        enabled = torch.is_autocast_enabled("cpu")
        seen.append(torch.get_autocast_dtype("cpu") if enabled else None)
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(SegmentationModule, "training_step", recording)
    result = bioseg.train(
        tiny_config(cells_dir, tmp_path), overrides=[*TINY, f"train.precision={precision}"], progress=False
    )
    assert seen and set(seen) == {dtype}
    assert (result.model_dir / "weights.safetensors").is_file()


def test_multiclass_training_from_three_class_masks(tmp_path):
    import numpy as np

    from bioseg.data.layouts import discover
    from bioseg.data.splits import make_splits
    from bioseg.io import write_png

    rng = np.random.default_rng(0)
    for i in range(6):
        mask = np.zeros((40, 40), np.uint8)
        mask[5:20, 5:20], mask[22:35, 20:38] = 1, 2
        image = (mask * 80 + rng.integers(0, 40, mask.shape)).astype(np.uint8)
        write_png(tmp_path / "d" / "images" / f"{i}.png", image)
        write_png(tmp_path / "d" / "masks" / f"{i}.png", mask)
    make_splits(discover(tmp_path / "d"), folds=1, test_split=0.2, val_split=0.2)
    cfg = tiny_config(tmp_path / "d", tmp_path / "runs")
    cfg["data"]["classes"] = ["bg", "a", "b"]
    result = bioseg.train(cfg, overrides=TINY, progress=False)
    predictor = bioseg.Predictor.from_run(result.run_dir)
    prediction = predictor.predict(image)
    assert prediction.probabilities["mask"].shape == (3, 40, 40)
    assert np.allclose(prediction.probabilities["mask"].sum(0), 1, atol=1e-4)
    assert "val/mask/dice/b" in result.history[-1]


def test_isbi_em_end_to_end_with_mapped_membrane_masks(tmp_path):
    data = dataset_dir("isbi2012_em")
    splits = tmp_path / "splits"
    assert run_cli("split", data, "--folds", "1", "--test-split", "0.2", "--output", splits) == 0
    cfg_path = tmp_path / "isbi.yaml"
    assert run_cli("init-config", data, "-o", cfg_path, "--name", "isbi") == 0
    sets = [
        *TINY,
        f"data.splits_dir={splits}",
        "data.mask_values={0: 1, 255: 0}",  # membrane (0 in the files) is the foreground class
        "data.classes=[cytoplasm, membrane]",
        "data.patch_size=[64,64]",
        "infer.patch_size=[128,128]",
    ]
    assert run_cli("train", cfg_path, "--no-progress", *[x for s in sets for x in ("--set", s)]) == 0
    run = tmp_path / "runs" / "isbi" / "fold_0"
    assert run_cli("evaluate", run, "--split", "test", "--no-progress") == 0
    metrics = json.loads((run / "predictions" / "test" / "metrics.json").read_text())
    assert metrics["n_images"] == 6 and metrics["classes"] == ["cytoplasm", "membrane"]
    # the scores come from the real masks with 0 (membrane) mapped to class 1: recompute one image by hand
    import csv

    import tifffile

    from bioseg.io import read_mask

    rows = list(csv.DictReader((run / "predictions" / "test" / "per_image.csv").open()))
    row = rows[0]
    pred = tifffile.imread(run / "predictions" / "test" / f"{row['image']}_labels.tif") == 1
    truth = read_mask(data / "masks" / f"{row['image']}.png") == 0
    dice = 2 * (pred & truth).sum() / (pred.sum() + truth.sum())
    assert float(row["dice/membrane"]) == pytest.approx(dice, abs=1e-6)


def test_random_channel_spec_trains_and_predicts_deterministically(tmp_path):
    import numpy as np

    from bioseg.data.layouts import discover
    from bioseg.data.splits import make_splits
    from bioseg.io import write_tiff

    rng = np.random.default_rng(0)
    for i in range(6):
        mask = np.zeros((32, 32), np.uint8)
        mask[8:24, 6:20] = 1
        # the object shows in channels 0 and 2 (two stains), channel 1 is noise only
        image = np.stack(
            [
                mask * 200 + rng.integers(0, 30, mask.shape),
                rng.integers(0, 255, mask.shape),
                mask * 120 + rng.integers(0, 30, mask.shape),
            ]
        ).astype(np.uint8)
        write_tiff(tmp_path / "d" / "images" / f"{i}.tif", image, axes="CYX")
        write_tiff(tmp_path / "d" / "masks" / f"{i}.tif", mask)
    make_splits(discover(tmp_path / "d"), folds=1, test_split=0.2, val_split=0.2)
    cfg = tiny_config(tmp_path / "d", tmp_path / "runs")
    cfg["data"]["channels"] = [{"random": [0, 2]}, {"index": 1, "dropout": 0.5}]
    cfg["data"]["in_channels"] = 2
    result = bioseg.train(cfg, overrides=TINY, progress=False)
    meta = json.loads((result.model_dir / "model.json").read_text())
    assert meta["channels"] == [{"random": [0, 2]}, {"index": 1, "dropout": 0.5}]
    predictor = bioseg.Predictor.from_run(result.run_dir)
    first = predictor.predict(image).probabilities["mask"]
    assert np.array_equal(first, predictor.predict(image).probabilities["mask"])  # eval: no draws
    bad = dict(cfg, name="bad")
    bad["data"] = dict(cfg["data"], channels=[{"randm": [0, 2]}])
    with pytest.raises(BiosegError, match="randm"):
        bioseg.train(bad, overrides=TINY, progress=False)


def test_resunet_trains_with_a_frozen_encoder_first(cells_dir, tmp_path):
    import lightning as L
    from safetensors.torch import load_file

    from bioseg import config as config_mod
    from bioseg.engine.module import SegmentationModule

    cfg = tiny_config(cells_dir, tmp_path)
    cfg["model"] = {"name": "resunet", "decoder_widths": [4, 8, 8, 16, 16]}
    tiny = [o for o in TINY if not o.startswith("model.")]
    overrides = [*tiny, "data.patch_size=[64,64]", "infer.patch_size=[64,64]", "train.freeze_encoder_epochs=1"]
    result = bioseg.train(cfg, overrides=overrides, progress=False)
    trained = load_file(str(result.model_dir / "weights.safetensors"))
    # the same seeded initialisation, rebuilt: one frozen epoch left the encoder's convolutions as they were
    L.seed_everything(0, verbose=False)
    initial = SegmentationModule(config_mod.to_dict(config_mod.from_dict(cfg, overrides=overrides))).net.state_dict()
    convs = [k for k in trained if k.startswith("encoder.") and k.endswith("conv1.weight")]
    assert convs and all(torch.equal(trained[k], initial[k]) for k in convs)
    changed = [k for k in trained if not k.startswith("encoder.") and not torch.equal(trained[k], initial[k])]
    assert changed  # the decoder and heads did train
    with pytest.raises(BiosegError, match="does not use model.widths"):
        bioseg.train(
            {**cfg, "name": "w", "model": {"name": "resunet", "widths": [4, 8]}}, overrides=overrides, progress=False
        )


def test_cosine_follows_a_wall_clock_budget(monkeypatch):
    import bioseg.engine.module as module

    clock = {"t": 100.0}
    monkeypatch.setattr(module.time, "monotonic", lambda: clock["t"])
    f = warmup_then(warmup=0, total=1000, cosine=True, floor=0.0, budget_s=60.0)
    assert f(0) == pytest.approx(1.0)
    clock["t"] += 30.0  # half the time gone, few steps done: the time decides
    assert f(10) == pytest.approx(0.5, abs=1e-6)
    clock["t"] += 30.0
    assert f(20) == pytest.approx(0.0, abs=1e-9)


def test_an_h_written_as_the_voxel_size_by_earlier_releases_is_pointed_out(caplog):
    import logging

    from bioseg import config
    from bioseg.engine.trainer import _note_h_of_earlier_configs

    raw = {"data": {"root": "/d", "labels": "instance", "voxel_size": [0.5, 0.25, 0.25], "patch_size": [8, 16, 16]},
           "model": {"spatial_dims": 3}, "heads": INSTANCE_HEADS,
           "post": {"instances": {"mode": "boundary", "h": 0.25}}}  # fmt: skip
    logger = logging.getLogger("bioseg")
    logger.addHandler(caplog.handler)  # the command line's handler may have stopped propagation
    try:
        _note_h_of_earlier_configs(config.from_dict(raw))
        assert "post.instances.h is 0.25, which is voxels now" in caplog.text and "h: 1" in caplog.text
        caplog.clear()
        raw["post"]["instances"]["h"] = "0.25 um"
        _note_h_of_earlier_configs(config.from_dict(raw))
        assert caplog.text == ""
    finally:
        logger.removeHandler(caplog.handler)
