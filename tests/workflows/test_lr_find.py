"""bioseg lr-find: the range test, its suggestion, and --apply rewriting optim.lr in the YAML."""

import csv
import math
import re

import numpy as np
import pytest
import yaml
from helpers import TINY, run_cli

from bioseg.workflows.lr_find import apply_lr, smooth, suggest_lr


def test_smooth_is_centred_and_keeps_lines():
    line = [0.5 * i + 1 for i in range(30)]
    assert smooth(line) == pytest.approx(line)  # a centred average does not lag behind a trend
    noisy = [1.0, 3.0] * 10
    assert max(smooth(noisy, 5)[2:-2]) - min(smooth(noisy, 5)[2:-2]) < 0.5
    assert math.isnan(smooth([1.0, math.nan, 2.0])[1])


def test_suggestion_is_the_steepest_fall_before_the_minimum():
    lrs = list(np.logspace(-6, 0, 61))
    # falls fastest (in log lr) at 1e-3, bottoms out near 3e-2, diverges after
    losses = [1 - 0.8 / (1 + math.exp(-3 * (math.log10(lr) + 3))) + max(0.0, math.log10(lr) + 1.5) ** 2 for lr in lrs]
    suggestion = suggest_lr(lrs, losses)
    assert suggestion == pytest.approx(1e-3, rel=0.3)
    assert suggest_lr(lrs, [float(i) for i in range(61)]) is None  # the loss never falls
    assert suggest_lr([1e-3, 1e-2], [1.0, 0.5]) is None  # too few points


def test_apply_keeps_comments_and_other_keys(cells_dir, tmp_path):
    cfg = tmp_path / "exp.yaml"
    assert run_cli("init-config", cells_dir, "-o", cfg) == 0
    before_text = cfg.read_text()
    before = yaml.safe_load(before_text)
    written = apply_lr(cfg, 0.0123456)
    after_text = cfg.read_text()
    after = yaml.safe_load(after_text)
    assert written == 0.0123 and after["optim"]["lr"] == 0.0123
    after["optim"]["lr"] = before["optim"]["lr"]
    assert after == before
    comments = [line for line in before_text.splitlines() if line.lstrip().startswith("#")]
    assert comments and comments == [line for line in after_text.splitlines() if line.lstrip().startswith("#")]


def test_apply_to_a_flow_style_file_regenerates_it(cells_dir, tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(f"# my notes\nname: x\ndata: {{root: {cells_dir}}}\noptim: {{name: adam, lr: 0.1}}\n")
    apply_lr(cfg, 3e-4)
    doc = yaml.safe_load(cfg.read_text())
    assert doc == {"name": "x", "data": {"root": str(cells_dir)}, "optim": {"name": "adam", "lr": 3e-4}}
    assert cfg.read_text().startswith("# my notes")


def test_lr_find_cli_plot_suggestion_and_apply(cells_dir, tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    assert run_cli("init-config", cells_dir, "-o", cfg, "--name", "lr") == 0
    original = yaml.safe_load(cfg.read_text())
    sets = [x for s in TINY for x in ("--set", s)]
    out = tmp_path / "charts" / "lr.png"
    code = run_cli("lr-find", cfg, "--steps", "16", "--no-progress", "-o", out, "--apply", *sets)
    text = capsys.readouterr().out
    assert code == 0, text
    suggested = float(re.search(r"suggested learning rate: (\S+)", text).group(1))
    assert math.isfinite(suggested) and 1e-6 <= suggested <= 1.0
    assert out.is_file() and out.stat().st_size > 10_000
    with out.with_suffix(".csv").open() as f:
        rows = list(csv.DictReader(f))
    assert 5 <= len(rows) <= 16
    lrs = [float(r["lr"]) for r in rows]
    assert lrs == sorted(lrs) and lrs[0] == pytest.approx(1e-6)
    written = yaml.safe_load(cfg.read_text())
    assert written["optim"]["lr"] == pytest.approx(suggested, rel=1e-2)
    written["optim"]["lr"] = original["optim"]["lr"]
    assert written == original
    assert not (tmp_path / "runs").exists()  # the range test leaves no run folder behind
