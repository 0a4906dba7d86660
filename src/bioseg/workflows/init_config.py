"""``bioseg init-config``: an experiment config inferred from the data, written as commented YAML."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bioseg import config as config_mod
from bioseg.data.layouts import discover
from bioseg.data.preprocess import dataset_percentiles
from bioseg.data.validate import check_dataset
from bioseg.errors import BiosegError
from bioseg.io import detect_spatial_dims, read_image, read_voxel_size
from bioseg.workflows.init_split import training_names

SECTION_COMMENTS = {
    "name": "Run name: the run folder is <output_dir>/<name>/fold_<k>/",
    "data": "Dataset, classes, channels, normalisation and patch sampling (inferred from the data)",
    "model": "Network: 'unet' works in 2D and 3D; widths per level",
    "heads": "One output head per task: binary (sigmoid) or multiclass (softmax), each with its loss terms",
    "train": "Training: epochs, precision (32 | bf16-mixed | 16-mixed), checkpoints on 'monitor'",
    "optim": "Optimiser: adamw | adam | sgd",
    "sched": "Learning-rate schedule: cosine | plateau | onecycle | none (with linear warm-up)",
    "augment": "Augmentations applied on the fly, in order, each with probability p",
    "infer": "Prediction: sliding window patch, overlap, blending, precision (fp32 | bf16), threshold",
    "post": "Cleanup of predicted label maps",
}


def infer_classes(values: list[int]) -> tuple[list[str], dict[int, int] | None]:
    """Distinct mask values → class names and a mask_values mapping when they are not already 0..n-1."""
    values = sorted(int(v) for v in values)
    if len(values) < 2:
        values = sorted(set(values) | {0, 1})
    n = len(values)
    names = ["background", "foreground"] if n == 2 else ["background"] + [f"class_{i}" for i in range(1, n)]
    if values == list(range(n)):
        return names, None
    return names, {v: i for i, v in enumerate(values)}


def informative_channels(images: list[np.ndarray]) -> list[int] | None:
    """Channels that carry signal: drop constant ones (e.g. alpha) and duplicates (grey stored as RGB)."""
    channels = images[0].shape[0]
    if channels == 1:
        return None
    keep: list[int] = []
    for c in range(channels):
        if all(float(img[c].std()) == 0.0 for img in images):
            continue
        if any(all(np.array_equal(img[c], img[k]) for img in images) for k in keep):
            continue
        keep.append(c)
    keep = keep or [0]
    return None if keep == list(range(channels)) else keep


def choose_normalization(images: list[np.ndarray]) -> dict[str, Any]:
    """Fixed dataset percentiles when images share an intensity range, else per-image percentiles."""
    ranges = []
    for img in images:
        lo, hi = np.percentile(img.reshape(img.shape[0], -1).astype(np.float32), (1.0, 99.8), axis=1)
        ranges.append(np.maximum(hi - lo, 1e-6))
    ranges = np.stack(ranges)
    if float((ranges.max(0) / ranges.min(0)).max()) > 2.0:
        return {"mode": "per_image", "percentiles": [1.0, 99.8]}
    low, high = dataset_percentiles(images)
    return {"mode": "dataset", "percentiles": [1.0, 99.8], "low": low, "high": high}


def choose_patch(sizes: list[tuple[int, ...]], divisor: tuple[int, ...], caps: tuple[int, ...]) -> list[int]:
    """The smallest image size per axis, capped, rounded down to the network's divisor (at least one)."""
    smallest = np.min(np.array(sizes), axis=0)
    return [int(max(d, min(c, s) // d * d)) for s, d, c in zip(smallest, divisor, caps, strict=True)]


def choose_pool_sizes(voxel_size: tuple[float, ...] | None, levels: int) -> list[list[int]] | None:
    """Per-level pooling that leaves a coarse z axis alone until the voxels are about isotropic."""
    if voxel_size is None or len(voxel_size) != 3:
        return None
    z, xy = float(voxel_size[0]), float(min(voxel_size[1:]))
    pools = []
    for _ in range(levels):
        if z / xy >= 1.5:  # z still coarser than the in-plane axes: pool in-plane only
            pools.append([1, 2, 2])
            xy *= 2
        else:
            pools.append([2, 2, 2])
            z, xy = z * 2, xy * 2
    return None if all(p == [2, 2, 2] for p in pools) else pools


def looks_like_instances(values: list[int], max_classes: int = 10) -> bool:
    """Masks with many distinct values hold object ids, not class indices."""
    return len(values) > max_classes


def choose_batch(patch: list[int], in_channels: int, widths: list[int], memory_fraction: float = 0.25) -> int:
    """A batch whose training activations (rough bound: 12 floats per feature-map element) fit the budget."""
    pixels = float(np.prod(patch))
    per_sample = sum(12 * 4 * w * pixels / (2 ** (len(patch) * level)) for level, w in enumerate(widths))
    per_sample += 4 * in_channels * pixels
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 2**30
    return int(np.clip(memory_fraction * total // per_sample, 1, 8))


#: boundary post-processing by image dimension, chosen with ``bioseg tune-instances`` on real data
#: (benchmarks/bench_instances_real.py): seeds of dynamic h = 1 voxel won on the DSB 2018 nuclei and both
#: ovule volumes; the volumes kept a low boundary cut and merge threshold, the 2D nuclei a higher merge one
INSTANCE_POST: dict[int, dict[str, float]] = {
    2: {"threshold": 0.5, "merge_threshold": 0.7},
    3: {"threshold": 0.3, "merge_threshold": 0.3},
}


@dataclass
class Inferred:
    """What ``init-config`` found: the ``config`` (a resolved experiment as a dict), ``notes`` to show (the
    split the statistics come from, every warning) and ``comments``: YAML comments by dotted key."""

    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    comments: dict[str, str] = field(default_factory=dict)


def infer_config(data_dir: str | Path, name: str | None = None, sample_images: int = 20) -> dict[str, Any]:
    """The resolved experiment (as a dict) that suits the dataset in ``data_dir`` (see :func:`infer_setup`)."""
    return infer_setup(data_dir, name=name, sample_images=sample_images).config


def infer_setup(
    data_dir: str | Path,
    name: str | None = None,
    sample_images: int = 20,
    voxel_size: Sequence[float] | None = None,
    splits_elsewhere: str | Path | None = None,
) -> Inferred:
    """The experiment that suits the dataset in ``data_dir``, with what the user must read about it.

    Intensity statistics come from the training images of fold 0 (:func:`training_names`: the default
    split is made first when there is none, in ``splits_elsewhere`` when the dataset folder is read-only).
    ``voxel_size`` ``(z, y, x)`` in µm overrides the files'.
    """
    data_dir = Path(data_dir).resolve()
    index = discover(data_dir)
    _refuse_without_masks(index, data_dir)
    dims = detect_spatial_dims(index.samples[0].image)
    voxel = tuple(float(v) for v in voxel_size) if voxel_size is not None else None
    if voxel is None and dims == 3:
        voxel = read_voxel_size(index.samples[0].image)
    report = check_dataset(index, spatial_dims=dims, voxel_size=voxel_size)  # files without one: warnings
    elsewhere = Path(splits_elsewhere).resolve() if splits_elsewhere is not None else None
    train, split_note, splits_dir = training_names(index, elsewhere=elsewhere)
    chosen = set(train)
    samples = [s for s in index.samples if s.name in chosen] or index.samples
    step = max(1, len(samples) // sample_images)
    images = [read_image(s.image, spatial_dims=dims) for s in samples[::step][:sample_images]]
    raw = _experiment(data_dir, name, dims, images, voxel)
    if splits_dir is not None:
        raw["data"]["splits_dir"] = str(splits_dir)
    comments = _describe_labels(raw, report, dims, voxel)
    if voxel is None and dims == 3:
        comments["data.voxel_size"] = VOXEL_COMMENT
    cfg = config_mod.to_dict(config_mod.from_dict(raw, source=str(data_dir)))
    return Inferred(cfg, [split_note, *report.warnings], comments)


VOXEL_COMMENT = (
    "the files give no voxel size, so z is pooled as if as fine as y and x: rerun init-config with "
    "--voxel-size Z,Y,X (µm) to pool and measure lengths by the real anisotropy"
)


def _refuse_without_masks(index, data_dir: Path) -> None:
    if not index.samples:
        raise BiosegError(f"{data_dir} holds no image/mask pairs ({index.layout} layout)")
    if any(s.mask is not None or s.masks for s in index.samples):
        return
    where = MASKS_LOOKED_FOR.get(index.layout, "beside the images")
    raise BiosegError(
        f"found {len(index.samples)} images but no masks in {data_dir}: looked for {where}; a config is "
        "inferred from the masks, so add one mask per image there (same file name), then run init-config again"
    )


MASKS_LOOKED_FOR = {
    "pairs": "masks/ (one file per image in images/, same name, any image suffix)",
    "xy": "train/y/ (one file per image in train/x/)",
    "csv": "the CSV's mask column",
    "multitask": "masks/<head>/ in train/, val/ and test/",
    "zarr": "labels/ in each store",
}


def _experiment(data_dir: Path, name: str | None, dims: int, images: list[np.ndarray], voxel) -> dict[str, Any]:
    """Everything but the labels: channels, normalisation, patch, batch, pooling (from training images)."""
    channels = informative_channels(images)
    picked = [img[channels] if channels else img for img in images]
    in_channels = picked[0].shape[0]
    widths = [16, 32, 64, 128]  # the default unet's
    pools = choose_pool_sizes(voxel, len(widths) - 1) if dims == 3 else None
    divisor = tuple(int(np.prod([p[a] for p in pools])) if pools else 2 ** (len(widths) - 1) for a in range(dims))
    caps = (256, 256) if dims == 2 else (32, 128, 128)  # 3D: about half a million voxels a patch on a CPU
    patch = choose_patch([img.shape[1:] for img in picked], divisor, caps)
    data: dict[str, Any] = {
        "root": str(data_dir),
        "channels": channels,
        "in_channels": in_channels,
        "normalization": choose_normalization(picked),
        "patch_size": patch,
        "batch_size": choose_batch(patch, in_channels, widths),
    }
    if voxel is not None:
        data["voxel_size"] = list(voxel)
    model = {"spatial_dims": dims, "pool_sizes": pools}
    return {"name": name or data_dir.name, "output_dir": "runs", "data": data, "model": model}


def _describe_labels(raw: dict[str, Any], report, dims: int, voxel) -> dict[str, str]:
    """Fill in labels, classes and heads from the masks' values; the YAML comments that go with them."""
    data, advice = raw["data"], report.mask_advice
    values = report.summary["mask_values"]
    if advice is not None and advice.classes is not None:
        data["classes"], data["mask_values"] = advice.classes, advice.mask_values
        key = "data.mask_threshold" if advice.mask_threshold is not None else "data.mask_values"
        if advice.mask_threshold is not None:
            data["mask_threshold"] = advice.mask_threshold
        return {key: advice.comment or ""}
    if not looks_like_instances(values):
        data["classes"], data["mask_values"] = infer_classes(values)
        return {}
    unit = float(min(voxel)) if voxel else 1.0  # the weight map's sigma is read in voxel-size units
    data["labels"] = "instance"  # objects: learn their inside and their borders, then split them there
    raw["heads"] = {
        "foreground": {"type": "binary", "target": "foreground"},
        "boundaries": {"type": "binary", "target": "boundary", "weight_map": {"w0": 5.0, "sigma": 3.0 * unit}},
    }
    # h is a number of voxels (of the finest axis) whatever the voxel size: one in-plane voxel
    raw["post"] = {"instances": {"mode": "boundary", "h": 1.0, **INSTANCE_POST[dims]}}
    return {}


def write_config(
    cfg: dict[str, Any], path: str | Path, header: str = "", comments: dict[str, str] | None = None
) -> Path:
    """YAML with a comment above each section (every default written out) and above the keys of
    ``comments`` (dotted key, e.g. ``data.mask_values`` → its comment)."""
    lines = [f"# {line}" for line in header.splitlines()] if header else []
    for key, value in cfg.items():
        if key in SECTION_COMMENTS:
            lines.append(f"\n# {SECTION_COMMENTS[key]}")
        section = yaml.safe_dump({key: value}, sort_keys=False).rstrip()
        for dotted, comment in (comments or {}).items():
            top, _, sub = dotted.partition(".")
            if top == key and sub:
                section = section.replace(f"\n  {sub}:", f"\n  # {comment}\n  {sub}:", 1)
        lines.append(section)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).lstrip() + "\n")
    return path
