"""``bioseg augment-preview``: a grid of training patches after augmentation, with their masks outlined.

The patches are drawn exactly as training draws them (the fold's training images, the config's patch size,
foreground fraction and channel spec) and go through the config's augmentation pipeline, so the grid shows
what the model will see. Tiles keep one intensity scale (taken from the patches before augmentation), so
brightness, contrast and noise changes stay visible; the first head's target is outlined per class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bioseg.config import Experiment, as_experiment
from bioseg.data.checked import checked_data
from bioseg.errors import BiosegError
from bioseg.io.folders import check_output_folder
from bioseg.reports.augment_preview import MIN_TILE, grid_shape, tile_grid


@dataclass
class PreviewResult:
    path: Path
    n: int
    rows: int
    cols: int
    tile: tuple[int, int]  # (height, width) of one tile in the PNG


def _middle_plane(t: Any) -> np.ndarray:
    """``(N, C, *spatial)`` tensor → ``(N, C, Y, X)`` numpy: 3D patches show their middle plane."""
    a = t.detach().float().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
    return a[:, :, a.shape[2] // 2] if a.ndim == 5 else a


def augment_preview(
    config: Experiment | dict[str, Any] | str | Path,
    n: int = 16,
    out: str | Path = "augment_preview.png",
    *,
    overrides: list[str] | None = None,
    seed: int | None = None,
    fold: int | None = None,
    cols: int | None = None,
    head: str | None = None,
) -> PreviewResult:
    """Draw ``n`` training patches, augment them with the config's pipeline and write the grid as a PNG.

    ``seed`` (default the config's) picks the patches and the augmentation draws; ``head`` (default the
    first) is the target outlined.
    """
    import torch

    from bioseg.data.augment import build_augmentation
    from bioseg.io import write_png

    cfg = as_experiment(config, overrides, fold=fold)
    check_output_folder(Path(out).parent, "folder of the preview")
    heads = list(cfg.heads)
    head = head or heads[0]
    if head not in cfg.heads:
        raise BiosegError(f"head '{head}' is not in the config; heads: {', '.join(heads)}")
    seed = cfg.seed if seed is None else seed
    batch = _training_patches(cfg, n, seed)
    image = batch["image"].float()
    moving = {k: v for k, v in batch.items() if k.startswith(("target/", "weight/"))}
    if cfg.augment:
        augmentation = build_augmentation(cfg.augment, cfg.model.spatial_dims)
        augmented, moved = augmentation(image, moving, generator=torch.Generator().manual_seed(seed))
    else:
        augmented, moved = image, moving
    before = _middle_plane(image)
    flat = np.moveaxis(before, 1, 0).reshape(before.shape[1], -1)
    low, high = np.percentile(flat, 1.0, axis=1), np.percentile(flat, 99.8, axis=1)
    margin = 0.1 * (high - low)  # headroom, so that brightened or darkened patches do not just saturate
    labels = _middle_plane(moved[f"target/{head}"])[:, 0].round().astype(np.int64)
    grid = tile_grid(_middle_plane(augmented), labels, cols=cols, low=low - margin, high=high + margin)
    path = write_png(Path(out), grid)
    rows, ncols = grid_shape(n, cols)
    h, w = before.shape[2:]
    scale = max(1, math.ceil(MIN_TILE / max(h, w)))
    return PreviewResult(path, n, rows, ncols, (h * scale, w * scale))


def _training_patches(cfg: Experiment, n: int, seed: int) -> dict[str, Any]:
    """One batch of ``n`` patches drawn as training draws them, from up to ``n`` of the fold's images."""
    from torch.utils.data import DataLoader

    from bioseg.data.datamodule import load_samples
    from bioseg.data.dataset import PatchDataset, channel_mapper

    index, split = checked_data(cfg)
    names = split.get("train") or []
    if not names:
        raise BiosegError(f"fold {cfg.data.fold} has no training images; re-run 'bioseg split'")
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(names), size=min(n, len(names)), replace=False).tolist())
    samples = load_samples(index, [names[i] for i in picked], cfg, "train")
    mapper = channel_mapper(cfg.data)
    dataset = PatchDataset(
        samples,
        cfg.data.patch_size,
        n,
        cfg.data.foreground_fraction,
        seed=seed,
        channels=mapper if mapper is not None and mapper.stochastic else None,
    )
    return next(iter(DataLoader(dataset, batch_size=n, shuffle=False)))
