"""In-memory samples and random patch sampling for training; whole images for validation.

A sample holds the normalised image and, per head, its target and optional pixel-weight map, computed
once when the sample is loaded (never per epoch). Batches are dicts: ``image``, ``target/<head>`` and
``weight/<head>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from bioseg.config import DataConfig, Experiment
from bioseg.config.channels import is_channel_spec_simple
from bioseg.data.channels import ChannelMapper
from bioseg.data.head_targets import make_head_targets
from bioseg.data.layouts import Sample
from bioseg.data.mask_values import threshold_mask
from bioseg.data.preprocess import map_mask, normalize, select_channels
from bioseg.data.resize import fit_to_square, plan_fit
from bioseg.errors import BiosegError
from bioseg.io import read_image, read_mask, read_voxel_size


@dataclass
class LoadedSample:
    """A normalised image ``(C, *spatial)`` float32 with per-head targets and weights ``(*spatial)``."""

    name: str
    image: np.ndarray
    targets: dict[str, np.ndarray]
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    mask: np.ndarray | None = None  # the mask as read (class indices or instance ids), for evaluation

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything that is cropped together, keyed as in a batch (spatial axes last)."""
        out = {"image": self.image}
        out.update({f"target/{k}": v for k, v in self.targets.items()})
        out.update({f"weight/{k}": v for k, v in self.weights.items()})
        return out


def read_input(path: Path, data: DataConfig, spatial_dims: int) -> np.ndarray:
    return read_image(path, spatial_dims=spatial_dims, axes=data.axes)


def channel_mapper(data: DataConfig) -> ChannelMapper | None:
    """The mapper for a channel spec beyond a plain list of indices (None: plain selection)."""
    if is_channel_spec_simple(data.channels):
        return None
    mapper = ChannelMapper(data.channels, data.channel_names)
    if mapper.n_out != data.in_channels:
        raise BiosegError(
            f"data.channels makes {mapper.n_out} input channel(s) but data.in_channels is {data.in_channels}; "
            "set data.in_channels to match"
        )
    return mapper


def normalise_image(image: np.ndarray, data: DataConfig) -> np.ndarray:
    norm = data.normalization
    return normalize(image, norm.mode, norm.percentiles, norm.low, norm.high)


def prepare_image(raw: np.ndarray, data: DataConfig, name: str) -> np.ndarray:
    """The model input for a raw ``(C, *spatial)`` image, as at validation and prediction: plain channel
    selection then normalisation, or normalisation of every channel then the (deterministic) channel spec."""
    mapper = channel_mapper(data)
    if mapper is None:
        return normalise_image(select_channels(raw, data.channels, data.in_channels, name), data)
    if data.normalization.mode == "dataset" and len(data.normalization.low or []) != raw.shape[0]:
        raise BiosegError(
            f"{name}: with a channel spec, normalization.low/high need one value per image channel ({raw.shape[0]})"
        )
    return mapper(normalise_image(raw, data), train=False, name=name)


def read_label_mask(path: Path, cfg: Experiment, head: str | None = None) -> np.ndarray:
    """A mask as the config reads it: mapped class indices, or instance ids kept as they are.

    ``head``: the mask is that head's own file (multitask, zarr), mapped by the head's mask_values.
    ``data.mask_threshold`` turns the one mask of each image (pairs, xy and csv layouts) into 0/1 first.
    """
    d = cfg.data
    raw = read_mask(path, spatial_dims=cfg.model.spatial_dims, axes=_mask_axes(d.axes))
    if d.labels == "instance":
        return raw.astype(np.int64, copy=False)
    if d.mask_threshold is not None and head is None:
        raw = threshold_mask(raw, d.mask_threshold)
    if head is not None:
        h = cfg.heads[head]
        return map_mask(raw, h.mask_values, h.classes, str(path))
    return map_mask(raw, d.mask_values, d.num_classes, str(path))


def read_head_masks(sample: Sample, cfg: Experiment) -> np.ndarray | dict[str, np.ndarray | None]:
    """One mask for every head, or (when the sample has a mask per head) each head's own mask."""
    if not sample.masks:
        return read_label_mask(sample.mask, cfg)
    return {
        name: read_label_mask(sample.masks[head.source or name], cfg, name)
        if (head.source or name) in sample.masks
        else None
        for name, head in cfg.heads.items()
    }


def _mask_axes(axes: str | None) -> str | None:
    return axes.replace("C", "") if axes else None


def voxel_spacing(path: Path, cfg: Experiment) -> tuple[float, ...] | None:
    if cfg.data.voxel_size is not None:
        return tuple(cfg.data.voxel_size)
    size = read_voxel_size(path) if cfg.model.spatial_dims == 3 else None
    return tuple(size) if size else None


def load_sample(sample: Sample, cfg: Experiment, train: bool = False) -> LoadedSample:
    """``train`` with a random channel spec keeps every normalised channel: the draw is made per patch."""
    dims = cfg.model.spatial_dims
    raw = read_input(sample.image, cfg.data, dims)
    mapper = channel_mapper(cfg.data)
    if train and mapper is not None and mapper.stochastic:
        image = normalise_image(raw, cfg.data)
    else:
        image = prepare_image(raw, cfg.data, str(sample.image))
    masks = read_head_masks(sample, cfg)
    if cfg.data.resize:  # whole specimens at a fixed size: image linear, masks nearest, both padded
        fit = plan_fit(image.shape[1:], cfg.data.resize)
        image = fit_to_square(image, fit)
        masks = _fit_masks(masks, fit)
    targets, weights = make_head_targets(masks, cfg, voxel_spacing(sample.image, cfg))
    return LoadedSample(sample.name, image, targets, weights, masks if not isinstance(masks, dict) else None)


def _fit_masks(masks, fit):
    if isinstance(masks, dict):
        return {k: None if m is None else fit_to_square(m[None], fit, nearest=True)[0] for k, m in masks.items()}
    return fit_to_square(masks[None], fit, nearest=True)[0]


def fill_missing_weights(samples: list[LoadedSample]) -> None:
    """Batches need the same keys in every item: give weight maps of ones to samples that lack a head's
    map while another sample has one (a missing mask, a head with a U-Net weight map)."""
    heads = {h for s in samples for h in s.weights}
    for s in samples:
        for h in heads - set(s.weights):
            s.weights[h] = np.ones(s.targets[h].shape, np.float32)


def pad_to(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Mirror-pad the trailing axes of ``array`` at their end up to ``shape`` (repeatedly if much smaller)."""
    lead = array.ndim - len(shape)
    while True:
        need = [max(0, s - d) for s, d in zip(shape, array.shape[lead:], strict=True)]
        if not any(need):
            return array
        step = [(0, 0)] * lead + [(0, min(n, d)) for n, d in zip(need, array.shape[lead:], strict=True)]
        array = np.pad(array, step, mode="symmetric")


def crop(arrays: dict[str, np.ndarray], start: Sequence[int], size: Sequence[int]) -> dict[str, torch.Tensor]:
    """The same window of every array; targets and weights gain a channel axis: ``(1, *size)``."""
    window = tuple(slice(a, a + p) for a, p in zip(start, size, strict=True))
    out = {}
    for key, array in arrays.items():
        lead = (slice(None),) * (array.ndim - len(size))
        piece = np.ascontiguousarray(array[lead + window])
        out[key] = torch.from_numpy(piece if key == "image" else piece[None])
    return out


class SeededDraws(Dataset):
    """Base of the training datasets: ``patches_per_epoch`` random draws per epoch, item ``i`` of epoch
    ``e`` drawn from a generator seeded by ``(seed, e, i)``, so a run gives the same items whatever the
    number of workers. ``channels``: a random channel spec, drawn per item."""

    def __init__(self, patches_per_epoch: int, seed: int, channels: ChannelMapper | None) -> None:
        self.channels = channels
        self.length = patches_per_epoch
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.epoch, index))

    def _with_drawn_channels(self, item: dict[str, torch.Tensor], rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """``item`` with its image through the channel spec (a new dict, so stored items stay unchanged);
        ``item`` itself when there is no spec."""
        if self.channels is None:
            return item
        return {**item, "image": torch.from_numpy(self.channels(item["image"].numpy(), train=True, rng=rng))}


class PatchDataset(SeededDraws):
    """Random patches of ``patch_size``; a fraction of them centred on a foreground pixel.

    Item ``i`` of epoch ``e`` is drawn from a generator seeded by ``(seed, e, i)``: the same run gives the
    same patches whatever the number of workers. Returns ``{"image": (C, *patch), "target/<head>":
    (1, *patch), "weight/<head>": (1, *patch)}``.
    """

    def __init__(
        self,
        samples: list[LoadedSample],
        patch_size: Sequence[int],
        patches_per_epoch: int,
        foreground_fraction: float = 0.5,
        seed: int = 0,
        max_foreground_points: int = 4096,
        channels: ChannelMapper | None = None,
        per_image: bool = False,
    ) -> None:
        # per_image: item i is a patch of image i, one item per image (private training samples images)
        super().__init__(len(samples) if per_image else patches_per_epoch, seed, channels)
        self.per_image = per_image
        self.patch_size = tuple(int(p) for p in patch_size)
        self.arrays = [{k: pad_to(v, self.patch_size) for k, v in s.arrays().items()} for s in samples]
        self.foreground_fraction = foreground_fraction
        rng = np.random.default_rng(seed)
        self.foreground = []
        for s in samples:  # a bounded subsample of foreground coordinates per image, to centre patches on
            fg = np.zeros(s.image.shape[1:], bool)
            for target in s.targets.values():
                fg |= target > 0
            points = np.argwhere(fg)
            if len(points) > max_foreground_points:
                points = points[rng.choice(len(points), max_foreground_points, replace=False)]
            self.foreground.append(points)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = self._rng(index)
        k = index if self.per_image else int(rng.integers(len(self.arrays)))
        arrays, points = self.arrays[k], self.foreground[k]
        spatial = arrays["image"].shape[1:]
        if len(points) and rng.random() < self.foreground_fraction:
            centre = points[rng.integers(len(points))]
            start = [
                int(np.clip(c - p // 2, 0, s - p)) for c, p, s in zip(centre, self.patch_size, spatial, strict=True)
            ]
        else:
            start = [int(rng.integers(0, s - p + 1)) for p, s in zip(self.patch_size, spatial, strict=True)]
        return self._with_drawn_channels(crop(arrays, start, self.patch_size), rng)


class WholeImageDataset(Dataset):
    """Whole images for validation: ``{"image": (C, *spatial), "target/<head>": (1, *spatial), …}``."""

    def __init__(self, samples: list[LoadedSample]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        arrays = self.samples[index].arrays()
        return crop(arrays, [0] * (arrays["image"].ndim - 1), arrays["image"].shape[1:])
