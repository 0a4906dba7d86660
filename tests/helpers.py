"""Helpers shared by the tests: tiny training settings, the real datasets, the CLI in-process."""

import sys
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"

# Tiny, fast training settings for end-to-end tests (a few steps of a 2-level UNet).
TINY = [
    "train.epochs=1",
    "data.patch_size=[32,32]",
    "infer.patch_size=[32,32]",
    "data.batch_size=4",
    "data.patches_per_epoch=8",
    "model.widths=[4,8]",
    "train.snapshots=1",
]


def trained_like(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` in eval mode with non-trivial BatchNorm statistics and affine weights, as after training."""
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return net.eval()


def dataset_dir(name: str) -> Path:
    path = DATASETS / name
    if not path.is_dir():
        pytest.skip(f"real dataset {path} is absent (it ships beside the repository, not in it)")
    return path


def run_cli(*args) -> int:
    """Run the ``bioseg`` entry point in-process; returns its exit code."""
    from bioseg.cli import main

    with patch.object(sys, "argv", ["bioseg", *map(str, args)]):
        try:
            main()
        except SystemExit as exit_:
            return int(exit_.code or 0)
    return 0


def saved_run(folder: Path, settings: dict) -> Path:
    """A run folder holding an untrained network of the experiment ``settings`` (a dict), as training saves it."""
    from bioseg import config
    from bioseg.nn.bundle import build_network, save_model

    cfg = config.from_dict(settings)
    save_model(build_network(cfg), cfg, folder)
    return folder


# --- objects, for the instance tests --------------------------------------------------------------


def best_ious(truth, pred):
    """For each true object (1..N), the best IoU with any predicted object."""
    n_t, n_p = int(truth.max()), int(pred.max())
    pairs = truth.astype(np.int64) * (n_p + 1) + pred
    inter = np.bincount(pairs.ravel(), minlength=(n_t + 1) * (n_p + 1)).reshape(n_t + 1, n_p + 1)
    size_t, size_p = inter.sum(1), inter.sum(0)
    union = size_t[:, None] + size_p[None, :] - inter
    iou = inter[1:, 1:] / np.maximum(union[1:, 1:], 1)
    return iou.max(axis=1) if n_p else np.zeros(n_t)


def assert_sequential(labels):
    assert labels.dtype == np.int32
    values = np.unique(labels)
    assert values.min() >= 0
    nonzero = values[values > 0]
    np.testing.assert_array_equal(nonzero, np.arange(1, nonzero.size + 1))


def two_touching_discs(shape=(40, 61), r=12):
    yy, xx = np.indices(shape)
    a = (yy - 20) ** 2 + (xx - 18) ** 2 < r**2
    b = (yy - 20) ** 2 + (xx - 40) ** 2 < r**2
    truth = np.zeros(shape, np.int32)
    truth[a] = 1
    truth[b & ~a] = 2
    return truth


def anti_aliased_disc(shape=(33, 34), centre=(16, 17), r=9.3, scale=4) -> np.ndarray:
    """A disc drawn at ``scale``× and averaged down: uint8 0/255 with grey levels along its border."""
    yy, xx = np.indices((shape[0] * scale, shape[1] * scale))
    cy, cx = (centre[0] + 0.5) * scale - 0.5, (centre[1] + 0.5) * scale - 0.5
    big = ((yy - cy) ** 2 + (xx - cx) ** 2 < (r * scale) ** 2).astype(np.float64)
    small = big.reshape(shape[0], scale, shape[1], scale).mean(axis=(1, 3))
    return np.round(small * 255).astype(np.uint8)


# --- loss batches ----------------------------------------------------------------------------------

SPATIAL = {2: (17, 18), 3: (7, 8, 9)}


TOL = {"rtol": 1e-5, "atol": 1e-6}


def binary_batch(spatial_dims: int, seed: int = 0, n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (n, 1, *SPATIAL[spatial_dims])
    logits = torch.randn(shape, generator=g) * 2
    target = (torch.rand(shape, generator=g) > 0.6).float()
    return logits, target


def multiclass_batch(
    spatial_dims: int, classes: int = 3, seed: int = 0, n: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn((n, classes, *SPATIAL[spatial_dims]), generator=g) * 2
    target = torch.randint(0, classes, (n, *SPATIAL[spatial_dims]), generator=g)
    return logits, target


def pixel_weight(target_like: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """Random non-negative weights ``(N, 1, *spatial)`` with some exact zeros."""
    g = torch.Generator().manual_seed(seed)
    shape = (target_like.shape[0], 1, *target_like.shape[-len(target_like.shape) + 2 :])
    w = torch.rand(shape, generator=g) * 3
    return w * (torch.rand(shape, generator=g) > 0.2)


# --- instance experiments --------------------------------------------------------------------------

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


# --- models that answer every test-time view alike ---------------------------------------------------


class PointwiseNet(torch.nn.Module):
    """A 1×1 convolution per head: it commutes with every flip and turn of the image."""

    def __init__(self, dims: int, heads: dict[str, int], seed: int = 0) -> None:
        super().__init__()
        conv = torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d
        with torch.random.fork_rng():  # seeded weights, the tests' random state untouched
            torch.manual_seed(seed)
            self.heads = torch.nn.ModuleDict({h: conv(2, k, 1) for h, k in heads.items()})
        self.size_divisor = 1

    def forward(self, x):
        return {h: conv(x) for h, conv in self.heads.items()}


def two_heads(dims: int, **infer):
    """A 2-channel experiment with a binary head 'mask' and a 3-class head 'kind'."""
    patch = [8] * dims
    from bioseg import config

    return config.from_dict({
        "model": {"spatial_dims": dims},
        "data": {"root": ".", "patch_size": patch, "in_channels": 2},
        "heads": {"mask": {"type": "binary"}, "kind": {"type": "multiclass", "classes": 3}},
        "infer": {"precision": "fp32", "patch_size": patch, **infer},
    })  # fmt: skip
