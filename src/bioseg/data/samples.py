"""What a dataset is made of: samples (an image and its masks), the index of a dataset, and the one rule
for listing image files (visible files, numbers in names sorted as numbers) that every layout uses."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from bioseg.errors import BiosegError
from bioseg.io.images import IMAGE_SUFFIXES


@dataclass(frozen=True)
class Sample:
    """One image and its mask (``None`` when it has none); ``name`` is unique in its dataset.

    ``masks`` maps head names to their own mask files (multitask and zarr layouts); a head that is
    absent there has no mask for this sample.
    """

    name: str
    image: Path
    mask: Path | None
    masks: dict[str, Path] = field(default_factory=dict, hash=False, compare=False)


@dataclass
class DatasetIndex:
    """The samples found under ``root``, sorted by name (numbers in names sort as numbers).

    ``presplit`` holds the train/val/test names of an ``xy`` dataset (parts that are absent are
    empty lists), ``None`` for the other layouts. ``problems`` lists what did not pair up.
    """

    root: Path
    layout: str
    samples: list[Sample]
    presplit: dict[str, list[str]] | None = None
    problems: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.samples]

    def sample(self, name: str) -> Sample:
        for s in self.samples:
            if s.name == name:
                return s
        raise BiosegError(f"sample '{name}' is not in the dataset {self.root}")

    def display(self, path: Path | None) -> str:
        """``path`` relative to ``root`` when it lies inside (``masks/7.png``), else as it is."""
        if path is None:
            return "-"
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return str(path)


def natural_key(text: str) -> list[int | str]:
    """Sort key under which ``img2`` comes before ``img10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def visible_entries(folder: Path) -> list[Path]:
    """Entries of ``folder`` that are not hidden and not the split files' folder."""
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if not p.name.startswith(".") and p.name != "splits"]


def image_files(folder: Path) -> list[Path]:
    """Visible image files directly inside ``folder``, by natural order of their names."""
    files = [p for p in visible_entries(folder) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: natural_key(p.name))
