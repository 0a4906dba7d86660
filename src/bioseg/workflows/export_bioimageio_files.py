"""The files of a bioimage.io package besides weights and rdf.yaml: a self-contained architecture source
(for the ``pytorch_state_dict`` weights), the cover image and the README."""

from __future__ import annotations

import ast
import csv
import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np

from bioseg import __version__
from bioseg.nn.bundle import ModelBundle

#: the callable in the architecture file: the UNet with its heads' activations, as ProbabilityNet
ARCHITECTURE_CALLABLE = "BiosegProbabilityNet"

_HEADER = '''"""bioseg {version}: the UNet and its blocks, self-contained (torch only), and the network that returns
each head's probabilities. Written by `bioseg export` from bioseg.nn.blocks and bioseg.nn.unet."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class BiosegError(ValueError):
    pass


def did_you_mean(value, choices):
    return ""

'''

_WRAPPER = '''

class {name}(nn.Module):
    """(N, C, *spatial) -> one probability tensor per head, in head order (sigmoid or softmax)."""

    def __init__(self, spatial_dims, in_channels, heads, head_types, options):
        super().__init__()
        self.net = UNet(spatial_dims, in_channels, heads, **options)
        self.head_types = dict(head_types)

    def forward(self, x):
        logits = self.net(x)
        return tuple(
            torch.sigmoid(logits[k]) if t == "binary" else torch.softmax(logits[k], dim=1)
            for k, t in self.head_types.items()
        )
'''


def _without_imports(source: str) -> str:
    """``source`` without its docstring and top-level imports (the header brings what they need)."""
    lines = source.splitlines()
    drop: set[int] = set()
    body = ast.parse(source).body
    for i, node in enumerate(body):
        docstring = i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        if docstring or isinstance(node, ast.Import | ast.ImportFrom):
            drop |= set(range(node.lineno - 1, node.end_lineno))
    return "\n".join(line for i, line in enumerate(lines) if i not in drop)


def architecture_source() -> str:
    """The UNet and its blocks as one Python file that needs torch only."""
    from bioseg.nn import blocks, unet

    parts = [_without_imports(inspect.getsource(m)) for m in (blocks, unet)]
    return _HEADER.format(version=__version__) + "\n".join(parts) + _WRAPPER.format(name=ARCHITECTURE_CALLABLE)


def cover(raw_tile: np.ndarray, probabilities: np.ndarray, path: Path) -> Path:
    """``image | image with the first head's foreground in red``, 2:1, at least 256 pixels high.
    ``raw_tile``: ``(C, *spatial)``; ``probabilities``: ``(K, *spatial)`` (3D: the middle slice is shown)."""
    import imageio.v3 as iio

    image, probs = raw_tile[0], probabilities
    if image.ndim == 3:
        image, probs = image[image.shape[0] // 2], probs[:, probs.shape[1] // 2]
    lo, hi = np.percentile(image, (1, 99.8))
    grey = np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1)
    fg = probs[0] > 0.5 if probs.shape[0] == 1 else probs.argmax(0) > 0
    rgb = np.stack([grey] * 3, -1)
    overlay = rgb.copy()
    overlay[fg] = 0.55 * overlay[fg] + 0.45 * np.array([1.0, 0.1, 0.1])
    both = np.concatenate([rgb, overlay], axis=1)
    zoom = max(1, int(np.ceil(256 / both.shape[0])))
    both = np.kron(both, np.ones((zoom, zoom, 1)))
    iio.imwrite(path, (both * 255).round().astype(np.uint8))
    return path


def _training_scores(run_dir: Path) -> list[str]:
    """Lines on the run's validation scores (metrics.csv) and any evaluation (predictions/*/metrics.json)."""
    lines = []
    table = run_dir / "metrics.csv"
    if table.is_file():
        rows = list(csv.DictReader(table.open()))
        if rows:
            last = {k: v for k, v in rows[-1].items() if k.startswith("val/") and v not in ("", None)}
            epoch = rows[-1].get("epoch") or "?"
            epoch = int(float(epoch)) + 1 if epoch.replace(".", "").isdigit() else epoch
            lines.append(f"- validation after epoch {epoch}: "
                         + ", ".join(f"{k} {float(v):.4f}" for k, v in sorted(last.items())))  # fmt: skip
    for found in sorted(run_dir.glob("predictions*/**/metrics.json"))[:3]:
        try:
            scores = json.loads(found.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        flat = {k: v for k, v in scores.items() if isinstance(v, int | float)} if isinstance(scores, dict) else {}
        if flat:
            lines.append(f"- {found.relative_to(run_dir)}: " + ", ".join(f"{k} {v:.4f}" for k, v in flat.items()))
    return lines or ["- no scores were recorded in the run folder"]


def readme(bundle: ModelBundle, meta: dict[str, Any], cite: list[dict[str, str]]) -> str:
    """README.md: the model, its training data and scores, how to use it, its validation, citation."""
    cfg = bundle.cfg
    heads = "\n".join(f"- `{k}`: {v['type']} ({v['activation']}), {v['channels']} channel(s), target {v['target']}"
                      + (f", threshold {v['threshold']}" if v["threshold"] is not None else "")
                      for k, v in meta["heads"].items())  # fmt: skip
    norm = meta["normalization"]
    how = (f"per image, percentiles {norm['percentiles']} of each channel to 0 and 1" if norm["mode"] == "per_image"
           else f"fixed per channel: low {norm['low']}, high {norm['high']}" if norm["mode"] == "dataset"
           else "none")  # fmt: skip
    return "\n".join([
        f"# {cfg.name}", "",
        f"A {cfg.model.spatial_dims}D {cfg.model.name} segmentation model trained with bioseg {__version__}; "
        f"classes {', '.join(cfg.data.classes)}.", "",
        "## Outputs", "", "One probability tensor per head (the activation is part of the network):", heads, "",
        "## Input", "",
        f"{cfg.data.in_channels} channel(s) (channel spec {cfg.data.channels}); normalisation: {how}. "
        f"Spatial sizes are multiples of {meta['size_divisor']}; the model was trained and tiles with "
        f"{meta['tile_size']} (overlap {meta['overlap']}).", "",
        "## Training data", "",
        f"- dataset: `{Path(cfg.data.root).name}` (layout {cfg.data.layout}, fold {cfg.data.fold}, "
        f"labels {cfg.data.labels}), patches {cfg.data.patch_size}, {cfg.train.epochs} epoch(s)", "",
        "## Validation", "", *_training_scores(bundle.run_dir), "",
        "Validate on your own images with masks: `bioseg evaluate` on the run, or compare this model's "
        "thresholded outputs with your masks (Dice per class).", "",
        "## Citation", "", *(f"- {c['text']} (doi: {c['doi']})" for c in cite), "",
    ])  # fmt: skip
