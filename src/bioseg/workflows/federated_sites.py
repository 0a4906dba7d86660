"""The sites of a federated run: ``--site NAME=DATA_DIR``, each site's experiment, and the check that
the sites agree (channels, mask values) before any round.

Each site reads and checks its own data; what it gives the coordinator is a profile (channel counts,
the raw mask values found, the images of its splits), never an image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bioseg.config import Experiment
from bioseg.data.checked import checked_data
from bioseg.data.layouts import discover
from bioseg.data.validate import check_dataset
from bioseg.errors import BiosegError


def parse_sites(entries: list[str]) -> dict[str, Path]:
    """``["A=data/a", "B=data/b"]`` → ``{"A": Path("data/a"), …}``; two sites or more, distinct names."""
    sites: dict[str, Path] = {}
    for entry in entries:
        name, sep, folder = entry.partition("=")
        name = name.strip()
        if not sep or not name or not folder.strip():
            raise BiosegError(f"--site '{entry}' is not NAME=DATA_DIR; write e.g. --site lab_a=data/lab_a")
        if name in sites:
            raise BiosegError(f"--site {name} is given twice; each site needs its own name")
        sites[name] = Path(folder.strip())
    if len(sites) < 2:
        raise BiosegError(f"federated training needs two sites or more (--site NAME=DATA_DIR each); got {len(sites)}")
    return sites


def site_experiment(cfg: Experiment, root: Path) -> Experiment:
    """The experiment as one site runs it: its own data folder and split, the rest shared."""
    site = cfg.model_copy(deep=True)
    site.data.root = Path(root)
    site.data.splits_dir = None  # each site's own <root>/splits
    return site


@dataclass
class SiteProfile:
    """What a site tells the coordinator about its data: no image, no mask."""

    name: str
    root: Path
    channels: list[int]  # channel counts of its images
    mask_values: list[int] | None  # raw values found in its masks; None for instance ids
    train: int  # images in its training split
    val: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "root": str(self.root), "channels": self.channels,
                "mask_values": self.mask_values, "train": self.train, "val": self.val}  # fmt: skip


def site_profile(cfg: Experiment, name: str, root: Path) -> SiteProfile:
    """Check one site's data against the experiment (every problem, as ``bioseg train`` would) and
    describe it. A site's problems are one BiosegError that names the site."""
    site = site_experiment(cfg, root)
    try:
        index, split = checked_data(site)
    except BiosegError as err:
        raise BiosegError(f"site '{name}' ({root}): {err}") from None
    if not split.get("val"):
        raise BiosegError(f"site '{name}' ({root}) has no validation images in fold {cfg.data.fold}; "
                          f"run 'bioseg split {root}' with a validation share")  # fmt: skip
    d = site.data
    summary = check_dataset(discover(d.root, d.layout, d.csv), spatial_dims=cfg.model.spatial_dims, axes=d.axes,
                            mask_threshold=d.mask_threshold).summary  # fmt: skip
    values = summary["mask_values"] if d.labels == "semantic" else None
    return SiteProfile(name, Path(root), sorted(summary["channels"]), values, len(split["train"]), len(split["val"]))


def check_sites(profiles: list[SiteProfile]) -> None:
    """One line naming the first site whose data disagree with the first site's, and how."""
    first = profiles[0]
    for site in profiles[1:]:
        where = f"site '{site.name}' ({site.root})"
        if site.channels != first.channels:
            raise BiosegError(
                f"{where} has images with {_counts(site.channels)} channel(s), site '{first.name}' with "
                f"{_counts(first.channels)}: every site must give the model the same channels"
            )
        if site.mask_values != first.mask_values:
            raise BiosegError(
                f"{where} has mask values {_values(site.mask_values)}, site '{first.name}' "
                f"{_values(first.mask_values)}: the sites must label the same classes the same way"
            )


def _counts(channels: list[int]) -> str:
    return " or ".join(str(c) for c in channels)


def _values(values: list[int] | None) -> str:
    return "{" + ", ".join(str(v) for v in values or []) + "}"
