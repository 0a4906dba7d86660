"""``bioseg lr-find``: the learning-rate range test (Lightning's tuner) on an experiment's training data.

The learning rate grows exponentially from ``min_lr`` to ``max_lr`` over ``steps`` training steps while the
(smoothed) loss is recorded; the suggestion is the rate where the loss falls fastest. The model starts from
the config's initialisation and nothing is written into run folders: the tuner's temporary checkpoint
lives in a temporary folder.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bioseg import config as config_mod
from bioseg.config import Experiment
from bioseg.errors import BiosegError
from bioseg.io.folders import check_output_folder
from bioseg.reports.lr_chart import plot_lr_find

__all__ = ["LRFindResult", "apply_lr", "find_lr", "smooth", "suggest_lr"]


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]  # smoothed training loss at each rate (NaN where it diverged)
    suggestion: float | None  # None when too few finite points were recorded
    plot_path: Path | None
    csv_path: Path | None = None
    raw_losses: list[float] | None = None  # the loss of each step before smoothing
    current_lr: float | None = None  # optim.lr of the config, for comparison


def smooth(values: list[float], window: int | None = None) -> list[float]:
    """Centred moving average over ``window`` points (odd; default about a tenth of them, at least 3),
    narrowed symmetrically at the ends. Centred, so the curve does not lag behind the rising rate;
    non-finite values stay NaN and are left out of their neighbours' averages."""
    n = len(values)
    if window is None:
        window = max(3, n // 10)
    half = max(0, int(window) // 2)
    out = []
    for i, v in enumerate(values):
        if not math.isfinite(v):
            out.append(math.nan)
            continue
        h = min(half, i, n - 1 - i)
        near = [u for u in values[i - h : i + h + 1] if math.isfinite(u)]
        out.append(sum(near) / len(near))
    return out


def suggest_lr(lrs: list[float], losses: list[float], skip_begin: int | None = None) -> float | None:
    """The rate where the loss falls fastest against log(lr), before the loss reaches its minimum.

    ``skip_begin`` first points are left out (default a tenth of them: the smoothed curve settles there).
    Returns None when fewer than three usable points remain.
    """
    import numpy as np

    skip = max(1, len(lrs) // 10) if skip_begin is None else skip_begin
    pts = [(lr, loss) for lr, loss in zip(lrs, losses, strict=True) if math.isfinite(loss) and lr > 0]
    if len(pts) < 3:
        return None
    x = np.log([p[0] for p in pts])
    y = np.array([p[1] for p in pts])
    end = int(np.argmin(y)) + 1  # past the minimum the loss only diverges
    if end - skip < 3:
        skip = max(0, end - 3)
    if end - skip < 3:
        return None
    slope = np.gradient(y[skip:end], x[skip:end])
    return float(np.exp(x[skip + int(np.argmin(slope))]))


def find_lr(
    config: Experiment | dict[str, Any] | str | Path,
    overrides: list[str] | None = None,
    *,
    out: str | Path | None = None,
    min_lr: float = 1e-6,
    max_lr: float = 1.0,
    steps: int = 100,
    fold: int | None = None,
    progress: bool = True,
) -> LRFindResult:
    """Run the range test and write the loss-vs-rate chart (``out``, a PNG) and its points (same stem, .csv).

    ``steps`` training steps of the config's batch size are drawn from the fold's training images (the
    number of patches per epoch is raised so that they fit in one epoch); validation does not run.
    """
    from bioseg.config import as_experiment
    from bioseg.engine.range_test import range_test

    if not 0 < min_lr < max_lr:
        raise BiosegError(f"the range {min_lr:g}..{max_lr:g} is empty; expected 0 < min_lr < max_lr")
    if steps < 5:
        raise BiosegError(f"--steps {steps} is too few for a range test; use at least 20 (default 100)")
    cfg = as_experiment(config, overrides, fold=fold)
    if out is not None:
        check_output_folder(Path(out).parent, "folder of the chart")
    lrs, step_losses = range_test(cfg, min_lr=min_lr, max_lr=max_lr, steps=steps, progress=progress)
    raw = _per_step(step_losses, cfg.train.accumulate_grad_batches)[: len(lrs)]
    lrs = lrs[: len(raw)]
    losses = smooth(raw)
    result = LRFindResult(lrs, losses, suggest_lr(lrs, losses), None, raw_losses=raw, current_lr=cfg.optim.lr)
    if out is not None:
        out = Path(out)
        result.plot_path = plot_lr_find(result, out)
        result.csv_path = out.with_suffix(".csv")
        with result.csv_path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["lr", "loss", "loss_smoothed"])
            writer.writerows(zip(lrs, raw, losses, strict=True))
    return result


def _per_step(losses: list[float], accumulate: int) -> list[float]:
    """Mean loss per optimiser step when gradients are accumulated over several batches."""
    if accumulate <= 1:
        return list(losses)
    n = len(losses) // accumulate
    return [sum(losses[i * accumulate : (i + 1) * accumulate]) / accumulate for i in range(n)]


def _round(value: float, digits: int = 3) -> float:
    return float(f"{value:.{digits}g}")


def apply_lr(config_path: str | Path, lr: float) -> float:
    """Write ``optim.lr`` into the YAML file (rounded to 3 significant digits); returns the value written.

    The file keeps its text where the ``lr:`` line of the ``optim:`` section can be rewritten in place;
    otherwise it is regenerated (section comments from ``init-config``, the leading comment kept).
    """
    from bioseg.workflows.init_config import write_config

    path = Path(config_path)
    text = path.read_text()
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict):
        raise BiosegError(f"{path} must hold a mapping of sections (data, model, train, …)")
    value = _round(lr)
    expected = dict(raw)
    expected["optim"] = {**(raw.get("optim") or {}), "lr": value}
    config_mod.from_dict(expected, source=str(path))  # the result must still be a valid experiment
    new = _replace_lr_line(text, value)
    if new is None or yaml.safe_load(new) != expected:
        write_config(expected, path, header=_leading_comment(text))
    else:
        path.write_text(new)
    return value


def _leading_comment(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return "\n".join(lines)


def _replace_lr_line(text: str, value: float) -> str | None:
    """``text`` with the value of ``lr:`` inside the top-level ``optim:`` block replaced, or None."""
    lines = text.splitlines(keepends=True)
    inside = False
    for i, line in enumerate(lines):
        stripped = line.strip()
        if line and not line[0].isspace() and stripped and not stripped.startswith("#"):
            inside = stripped.split("#")[0].strip() == "optim:"
            continue
        if inside and stripped.startswith("lr:"):
            indent = line[: len(line) - len(line.lstrip())]
            comment = ""
            if "#" in stripped:
                comment = "  #" + stripped.split("#", 1)[1]
            ending = "\n" if line.endswith("\n") else ""
            lines[i] = f"{indent}lr: {yaml.safe_dump(value).splitlines()[0]}{comment}{ending}"
            return "".join(lines)
    return None
