"""``bioseg patches``: a training patch set with its targets computed once and stored, then sampled from.

Expensive targets (weight maps of large 3D volumes) are computed when the patch set is written, not at
every training start. The set records what it was made for (heads, patch size, channels, normalisation)
so that a config that no longer matches it is refused rather than silently trained on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from bioseg.config import Experiment
from bioseg.data.dataset import PatchDataset, SeededDraws
from bioseg.errors import BiosegError

INDEX = "patch_set.json"


def fingerprint(cfg: Experiment) -> dict[str, Any]:
    """The parts of a config that change what a patch holds."""
    d = cfg.model_dump(mode="json")
    data = d["data"]
    keys = ("labels", "axes", "voxel_size", "classes", "mask_values", "channels", "in_channels", "normalization")
    kept = {k: data[k] for k in keys}
    if data.get("mask_threshold") is not None:  # only when set: sets written before it existed still match
        kept["mask_threshold"] = data["mask_threshold"]
    return {"data": kept, "patch_size": data["patch_size"], "heads": _head_targets(d)}


def _head_targets(d: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {k: head[k] for k in ("type", "classes", "target", "boundary", "weight_map")}
        for name, head in d["heads"].items()
    }


def write_patch_set(
    cfg: Experiment, samples: list, out_dir: Path, patches_per_image: int = 32, progress: bool = True
) -> Path:
    """Draw ``patches_per_image`` patches per training sample (same sampling as training) and store them."""
    out_dir = Path(out_dir)
    if (out_dir / INDEX).exists():
        raise BiosegError(f"{out_dir} already holds a patch set; remove it or choose another folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    d = cfg.data
    count = patches_per_image * len(samples)
    source = PatchDataset(samples, d.patch_size, count, d.foreground_fraction, seed=cfg.seed)
    for i in tqdm(range(count), desc="writing patches", disable=not progress):
        item = source[i]
        np.savez_compressed(out_dir / f"patch_{i:06d}.npz", **{k: v.numpy() for k, v in item.items()})
    doc = {"count": count, "made_for": fingerprint(cfg), "samples": [s.name for s in samples]}
    (out_dir / INDEX).write_text(json.dumps(doc, indent=2))  # written last: a half-written set has no index
    return out_dir


class PatchSetDataset(SeededDraws):
    """Random draws from a stored patch set, seeded per ``(seed, epoch, index)`` like ``PatchDataset``."""

    def __init__(self, folder: Path, cfg: Experiment, patches_per_epoch: int, seed: int = 0, channels=None) -> None:
        super().__init__(patches_per_epoch, seed, channels)
        folder = Path(folder)
        index = folder / INDEX
        if not index.is_file():
            raise BiosegError(f"{folder} is not a complete patch set (no {INDEX}); write one with 'bioseg patches'")
        doc = json.loads(index.read_text())
        if doc["made_for"] != fingerprint(cfg):
            raise BiosegError(
                f"the patch set in {folder} was made for other heads, patch size, channels or normalisation "
                "than this config; re-run 'bioseg patches' with this config"
            )
        self.items = []
        for i in range(doc["count"]):
            with np.load(folder / f"patch_{i:06d}.npz") as f:
                self.items.append({k: torch.from_numpy(f[k]) for k in f.files})

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = self._rng(index)
        return self._with_drawn_channels(self.items[int(rng.integers(len(self.items)))], rng)
