"""init-config --minutes: batch, patch, patches per epoch and epochs from a measured step (a fake one here)."""

import math

import pytest
import yaml
from helpers import run_cli

from bioseg import config
from bioseg.errors import BiosegError
from bioseg.workflows.training_budget import EPOCH_SECONDS, OVERHEAD, SPARE, fit_to_budget


def _raw(tmp_path, model=None, **data):
    raw = {"data": {"root": str(tmp_path), "batch_size": 8, **data}, "model": model or {}}
    return config.to_dict(config.from_dict(raw))


def cost(cfg) -> float:
    """A step that costs 0.05 s per 64² patch: batch 8 × 256² takes 3.2 s."""
    return 0.05 * cfg.data.batch_size * math.prod(cfg.data.patch_size) / 64**2


def test_a_fast_step_keeps_batch_and_patch_and_fits_epochs_to_the_minutes(tmp_path):
    raw, plan = fit_to_budget(_raw(tmp_path, patch_size=[64, 64]), 30, measure=cost)  # 0.4 s a step
    assert (plan.batch_size, plan.patch_size) == (8, [64, 64])
    assert plan.steps_per_epoch == round(EPOCH_SECONDS / OVERHEAD / 0.4) == 125
    assert raw["data"]["patches_per_epoch"] == 125 * 8
    epoch_seconds = 125 * 0.4 * OVERHEAD
    assert raw["train"]["epochs"] == plan.epochs == math.ceil(SPARE * 30 * 60 / epoch_seconds) == 38
    assert raw["train"]["max_time_minutes"] == 30  # the clock ends it
    assert "125 steps an epoch" in plan.describe() and "up to 38 epochs, stopped at 30 minutes" in plan.describe()


def test_a_slow_step_halves_the_batch_then_the_patch(tmp_path):
    seen = []

    def slow(cfg):
        seen.append((cfg.data.batch_size, list(cfg.data.patch_size)))
        return 40 * cost(cfg)  # batch 8 × 256²: 128 s a step

    _, plan = fit_to_budget(_raw(tmp_path, patch_size=[256, 256]), 30, measure=slow)
    assert seen[:3] == [(8, [256, 256]), (4, [256, 256]), (2, [256, 256])]
    assert seen[3:] == [(2, [128, 128]), (2, [64, 64])]  # 4 s a step: 15 steps a minute, enough
    assert (plan.batch_size, plan.patch_size) == (2, [64, 64]) and plan.epochs >= 1


def test_the_patch_stops_at_twice_the_network_size_divisor(tmp_path):
    _, plan = fit_to_budget(_raw(tmp_path, patch_size=[256, 256]), 30, measure=lambda cfg: 1000.0)
    assert (plan.batch_size, plan.patch_size) == (2, [16, 16])  # the default unet divides by 8
    assert plan.steps_per_epoch == 8 and plan.epochs == 1  # what it can: one epoch, cut by the clock


def test_volumes_keep_their_depth(tmp_path):
    model = {"spatial_dims": 3, "pool_sizes": [[1, 2, 2], [1, 2, 2], [2, 2, 2]]}
    raw = _raw(tmp_path, model, patch_size=[16, 128, 128])
    _, plan = fit_to_budget(raw, 10, measure=lambda cfg: 100 * cost(cfg))
    assert plan.patch_size[0] == 16 and plan.patch_size[1:] < [128, 128]


def test_no_time_is_refused(tmp_path):
    with pytest.raises(BiosegError, match="--minutes 0"):
        fit_to_budget(_raw(tmp_path), 0, measure=cost)


def test_init_config_minutes_measures_a_real_step_and_writes_the_plan(cells_dir, tmp_path, capsys):
    out = tmp_path / "exp.yaml"
    assert run_cli("init-config", cells_dir, "-o", out, "--minutes", "2") == 0
    printed = capsys.readouterr().out
    assert "sized for 2 minutes: a training step of" in printed
    cfg = yaml.safe_load(out.read_text())
    assert cfg["train"]["max_time_minutes"] == 2 and cfg["train"]["epochs"] >= 1
    assert cfg["data"]["patches_per_epoch"] % cfg["data"]["batch_size"] == 0
    assert "# Sized for 2 minutes of training" in out.read_text()
