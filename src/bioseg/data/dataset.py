"""In-memory samples and random patch sampling for training; whole images for validation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from bioseg.config import DataConfig
from bioseg.data.layouts import Sample
from bioseg.data.preprocess import map_mask, normalize, select_channels
from bioseg.io import read_image, read_mask


@dataclass
class LoadedSample:
    """A normalised image ``(C, *spatial)`` float32 and its class mask ``(*spatial)`` int64."""

    name: str
    image: np.ndarray
    mask: np.ndarray


def prepare_image(raw: np.ndarray, data: DataConfig, name: str) -> np.ndarray:
    """The model input for a raw ``(C, *spatial)`` image: channel selection, then normalisation."""
    image = select_channels(raw, data.channels, data.in_channels, name)
    norm = data.normalization
    return normalize(image, norm.mode, norm.percentiles, norm.low, norm.high)


def load_sample(sample: Sample, data: DataConfig) -> LoadedSample:
    image = prepare_image(read_image(sample.image), data, str(sample.image))
    mask = map_mask(read_mask(sample.mask), data.mask_values, data.num_classes, str(sample.mask))
    return LoadedSample(sample.name, image, mask)


def pad_to(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Mirror-pad the trailing axes of ``array`` at their end up to ``shape`` (repeatedly if much smaller)."""
    lead = array.ndim - len(shape)
    while True:
        need = [max(0, s - d) for s, d in zip(shape, array.shape[lead:], strict=True)]
        if not any(need):
            return array
        step = [(0, 0)] * lead + [(0, min(n, d)) for n, d in zip(need, array.shape[lead:], strict=True)]
        array = np.pad(array, step, mode="symmetric")


class PatchDataset(Dataset):
    """Random patches of ``patch_size``; a fraction of them centred on a foreground pixel.

    Item ``i`` of epoch ``e`` is drawn from a generator seeded by ``(seed, e, i)``: the same run gives the
    same patches whatever the number of workers. Returns ``{"image": (C, *patch), "mask": (1, *patch)}``.
    """

    def __init__(
        self,
        samples: list[LoadedSample],
        patch_size: Sequence[int],
        patches_per_epoch: int,
        foreground_fraction: float = 0.5,
        seed: int = 0,
        max_foreground_points: int = 4096,
    ) -> None:
        self.samples = samples
        self.patch_size = tuple(int(p) for p in patch_size)
        self.length = patches_per_epoch
        self.foreground_fraction = foreground_fraction
        self.seed = seed
        self.epoch = 0
        rng = np.random.default_rng(seed)
        self.foreground = []
        for s in samples:  # a bounded subsample of foreground coordinates per image, to centre patches on
            points = np.argwhere(s.mask > 0)
            if len(points) > max_foreground_points:
                points = points[rng.choice(len(points), max_foreground_points, replace=False)]
            self.foreground.append(points)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        k = int(rng.integers(len(self.samples)))
        sample, points = self.samples[k], self.foreground[k]
        image = pad_to(sample.image, self.patch_size)
        mask = pad_to(sample.mask, self.patch_size)
        spatial = mask.shape
        if len(points) and rng.random() < self.foreground_fraction:
            centre = points[rng.integers(len(points))]
            start = [
                int(np.clip(c - p // 2, 0, s - p))
                for c, p, s in zip(centre, self.patch_size, spatial, strict=True)
            ]
        else:
            start = [int(rng.integers(0, s - p + 1)) for p, s in zip(self.patch_size, spatial, strict=True)]
        window = tuple(slice(a, a + p) for a, p in zip(start, self.patch_size, strict=True))
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image[(slice(None), *window)])),
            "mask": torch.from_numpy(np.ascontiguousarray(mask[window]))[None],
        }


class WholeImageDataset(Dataset):
    """Whole images for validation: ``{"image": (C, *spatial), "mask": (1, *spatial), "index": int}``."""

    def __init__(self, samples: list[LoadedSample]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        s = self.samples[index]
        return {
            "image": torch.from_numpy(s.image),
            "mask": torch.from_numpy(s.mask)[None],
            "index": torch.tensor(index),
        }
