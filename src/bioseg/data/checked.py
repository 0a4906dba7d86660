"""The dataset of an experiment, discovered, checked and split: training starts only from usable data."""

from __future__ import annotations

from bioseg.config import Experiment
from bioseg.data.layouts import DatasetIndex, discover
from bioseg.data.splits import split_for
from bioseg.data.validate import check_dataset
from bioseg.errors import BiosegError


def checked_data(cfg: Experiment) -> tuple[DatasetIndex, dict[str, list[str]]]:
    """Discover and validate the dataset; every problem stops training before the first step."""
    d = cfg.data
    index = discover(d.root, d.layout, d.csv)
    semantic = d.labels == "semantic"  # instance ids are not class indices: only structure is checked
    report = check_dataset(
        index,
        num_classes=d.num_classes if semantic else None,
        mask_values=d.mask_values if semantic else None,
        spatial_dims=cfg.model.spatial_dims,
        axes=d.axes,
        heads=cfg.heads if semantic else None,  # each head's own masks against its classes and mapping
        mask_threshold=d.mask_threshold,
        voxel_size=d.voxel_size,
    )
    if not report.ok:
        listing = "\n".join(f"  - {p}" for p in report.problems)
        raise BiosegError(
            f"{d.root} has {len(report.problems)} problem(s); fix them (see 'bioseg check {d.root}'):\n{listing}"
        )
    split = split_for(index, d.splits_dir, d.fold)
    return index, split
