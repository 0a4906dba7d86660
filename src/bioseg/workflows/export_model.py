"""What every export format shares: the network that returns probabilities, the sizes it accepts, the
settings it needs beside it (metadata), an example image, and the comparison with PyTorch."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bioseg import __version__
from bioseg.errors import BiosegError
from bioseg.inference.heads import activate
from bioseg.nn.bundle import ModelBundle

INPUT = "input"
#: largest gap between exported and PyTorch probabilities that a check lets pass (float32)
TOLERANCE = 1e-4


class ProbabilityNet(torch.nn.Module):
    """``(N, C, *spatial)`` → one probability tensor ``(N, K, *spatial)`` per head, in head order: the
    network's logits after each head's sigmoid (binary) or softmax over classes (multiclass)."""

    def __init__(self, net: torch.nn.Module, head_types: dict[str, str]) -> None:
        super().__init__()
        self.net = net
        self.head_types = dict(head_types)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits = self.net(x)
        return tuple(activate(logits[name], kind, channel_dim=1) for name, kind in self.head_types.items())


def probability_net(bundle: ModelBundle) -> ProbabilityNet:
    """The bundle's network, in eval mode on the CPU, returning probabilities per head."""
    types = {name: head.type for name, head in bundle.cfg.heads.items()}
    return ProbabilityNet(bundle.net.cpu().eval(), types).eval()


def size_divisor(bundle: ModelBundle) -> tuple[int, ...]:
    """What every spatial size given to the network must be a multiple of, per axis."""
    dims = bundle.cfg.model.spatial_dims
    divisor = getattr(bundle.net, "size_divisor", 1)
    return tuple(divisor) if isinstance(divisor, Sequence) else (int(divisor),) * dims


def tile_size(bundle: ModelBundle) -> tuple[int, ...]:
    """The run's tile size, rounded down to the sizes the network accepts (its training patch where
    prediction plans the tiles per image)."""
    patch = bundle.cfg.infer.patch_size
    patch = bundle.cfg.data.patch_size if patch in (None, "auto") else patch
    return tuple(max(d, p // d * d) for p, d in zip(patch, size_divisor(bundle), strict=True))


def check_sizes(bundle: ModelBundle) -> list[tuple[int, ...]]:
    """Two input shapes ``(N, C, *spatial)`` other than the export shape: one tile plus one divisor per
    axis, and two tiles of about half the tile size (both accepted by the network)."""
    tile, div, c = tile_size(bundle), size_divisor(bundle), bundle.cfg.data.in_channels
    larger = tuple(t + d for t, d in zip(tile, div, strict=True))
    half = tuple(max(d, math.ceil(t / 2 / d) * d) for t, d in zip(tile, div, strict=True))
    if half == tile:
        half = tuple(t + 2 * d for t, d in zip(tile, div, strict=True))
    return [(1, c, *larger), (2, c, *half)]


def metadata(bundle: ModelBundle) -> dict[str, Any]:
    """Everything a program needs beside the exported network to predict as ``bioseg predict`` does:
    normalisation, channels, classes, heads (with thresholds), tiling and instance settings."""
    cfg = bundle.cfg
    norm = cfg.data.normalization
    return {
        "format": "bioseg-export",
        "bioseg_version": __version__,
        "name": cfg.name,
        "spatial_dims": cfg.model.spatial_dims,
        "axes": "bc" + "zyx"[3 - cfg.model.spatial_dims :],
        "input": INPUT,
        "in_channels": cfg.data.in_channels,
        "channels": cfg.data.channels,
        "channel_names": cfg.data.channel_names,
        "normalization": {"mode": norm.mode, "percentiles": list(norm.percentiles), "low": norm.low,
                          "high": norm.high, "eps": 1e-6},  # fmt: skip
        "classes": list(cfg.data.classes),
        "heads": {
            name: {"type": head.type, "channels": bundle.net.heads[name], "target": head.target,
                   "activation": "sigmoid" if head.type == "binary" else "softmax",
                   "threshold": cfg.infer.threshold if head.type == "binary" else None}  # fmt: skip
            for name, head in cfg.heads.items()
        },
        "size_divisor": list(size_divisor(bundle)),
        "tile_size": list(tile_size(bundle)),
        "overlap": cfg.infer.overlap,
        "blending": cfg.infer.blending,
        "post": cfg.post.model_dump(mode="json"),
        "voxel_size": cfg.data.voxel_size,
        "objects": bundle.objects,
    }


def example_image(bundle: ModelBundle) -> np.ndarray:
    """A raw image ``(C, *spatial)`` of the run's data (the first one found), or, when the data are not
    at hand, a smooth synthetic one; at least one tile large."""
    from bioseg.data.dataset import prepare_image, read_input
    from bioseg.data.layouts import discover

    cfg, tile = bundle.cfg, tile_size(bundle)
    try:
        sample = discover(cfg.data.root, cfg.data.layout, cfg.data.csv).samples[0]
        raw = read_input(Path(sample.image), cfg.data, cfg.model.spatial_dims)
        raw = raw if raw.ndim == len(tile) + 1 else raw[None]
        prepare_image(raw, cfg.data, "example")  # its channels fit the run
    except (BiosegError, OSError, IndexError, ValueError, AttributeError):
        raw = _synthetic(cfg.data.in_channels, tile)
    pad = [(0, 0)] + [(0, max(0, t - n)) for t, n in zip(tile, raw.shape[1:], strict=True)]
    return np.pad(raw, pad, mode="reflect") if any(p for _, p in pad[1:]) else raw


def _synthetic(channels: int, shape: Sequence[int]) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    noise = np.random.default_rng(0).normal(size=(channels, *shape))
    return np.stack([gaussian_filter(c, 2.0) for c in noise]).astype(np.float32) * 100 + 500


def example_tile(bundle: ModelBundle, raw: np.ndarray) -> np.ndarray:
    """The first tile of ``raw``, normalised as the run normalises whole images: ``(1, C, *tile)``."""
    from bioseg.data.dataset import prepare_image

    image = prepare_image(raw, bundle.cfg.data, "example")
    region = tuple(slice(0, t) for t in tile_size(bundle))
    return np.ascontiguousarray(image[(slice(None), *region)][None], dtype=np.float32)


def compare(
    label: str, run: Callable[[np.ndarray], Sequence[np.ndarray]], reference: ProbabilityNet,
    shapes: Sequence[tuple[int, ...]], heads: Sequence[str], tolerance: float = TOLERANCE,
) -> list[str]:  # fmt: skip
    """Problems (one line each) where ``run`` differs from the PyTorch ``reference`` by more than
    ``tolerance`` on random inputs of ``shapes``, or fails."""
    problems = []
    for shape in shapes:
        x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
        with torch.inference_mode():
            expected = [t.numpy() for t in reference(torch.from_numpy(x))]
        try:
            got = run(x)
        except Exception as err:  # any runtime's failure is a failed check
            problems.append(f"{label}: input {shape} fails: {str(err).splitlines()[0][:200]}")
            continue
        for name, e, g in zip(heads, expected, got, strict=True):
            diff = float(np.abs(e - np.asarray(g)).max()) if np.shape(g) == e.shape else math.inf
            if not diff <= tolerance:
                problems.append(
                    f"{label}: head '{name}' at input {shape} differs from PyTorch by {diff:.2g} "
                    f"(allowed {tolerance:g}; shapes {tuple(np.shape(g))} vs {e.shape})"
                )
    return problems


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value, indent=2) + "\n")
    return path
