"""Find the samples of a dataset folder: pairs of image and mask files, each with a stable name.

Three layouts are read:

* ``pairs``: ``root/images/`` and ``root/masks/``, paired by file stem (``images/7.png`` with
  ``masks/7.tif``); the sample name is the stem (``7``).
* ``xy`` (BiaPy): ``root/train/x`` and ``root/train/y``, optionally ``root/val/x|y`` and
  ``root/test/x|y``; files pair by stem when the stems agree, else in sorted order (BiaPy's rule),
  and the names are ``<part>/<stem>`` (``train/training-0001``). The parts become ``presplit``.
* ``csv``: a CSV file with columns ``image,mask`` (and optionally ``name``), paths relative to the
  CSV's folder; the sample name is the ``name`` column or else the image path without its suffix.

Discovery never reads pixels; it lists what does not pair up in ``DatasetIndex.problems``, and
``data.validate.check_dataset`` reports those together with what it finds in the files. An image
without a mask stays a sample (``mask=None``) so that names stay stable while the user adds masks.
Hidden files, files that are not images, sub-folders of ``images/``/``masks/`` and the folder
``root/splits/`` (where ``data.splits`` writes) are ignored.
"""

from __future__ import annotations

import csv as csv_module
from pathlib import Path
from typing import Literal

from bioseg.data.layouts_multitask import discover_multitask, discover_zarr, is_multitask, is_zarr_collection
from bioseg.data.samples import DatasetIndex, Sample, image_files, natural_key, visible_entries
from bioseg.errors import BiosegError
from bioseg.io.images import IMAGE_SUFFIXES

LAYOUTS_HELP = (
    "accepted layouts: 'pairs' = DIR/images/ + DIR/masks/ paired by file name; "
    "'xy' = DIR/train/x + DIR/train/y (optional val/x|y, test/x|y); "
    "'csv' = a CSV file with columns image,mask (paths relative to the CSV); "
    "'multitask' = DIR/train/images + DIR/train/masks/<head>/ (one folder per head); "
    "'zarr' = DIR/*.zarr OME-Zarr stores with labels/<head>"
)
PRESPLIT_PARTS = ("train", "val", "test")

__all__ = ["LAYOUTS_HELP", "DatasetIndex", "Sample", "discover", "natural_key"]


def discover(
    root: str | Path,
    layout: Literal["auto", "pairs", "xy", "csv", "multitask", "zarr"] = "auto",
    csv: str | Path | None = None,
) -> DatasetIndex:
    """Find the samples under ``root`` in the given layout (``auto``: the one the folder has).

    ``auto`` picks ``csv`` when ``csv`` is given, when ``root`` is a ``.csv`` file or when ``root``
    holds exactly one ``.csv`` file and no ``images/`` folder; ``pairs`` when ``root/images`` exists;
    ``xy`` when ``root/train/x`` exists. Raises BiosegError when ``root`` is missing or no layout fits.
    """
    root = Path(root)
    if not root.exists():
        raise BiosegError(f"dataset folder {root} does not exist; check data.root (or the DATA_DIR argument)")
    if layout not in ("auto", "pairs", "xy", "csv", "multitask", "zarr"):
        raise BiosegError(f"unknown layout '{layout}'; use auto, pairs, xy, csv, multitask or zarr")
    if layout == "auto":
        layout = _detect(root, csv)
    if layout == "csv":
        return _discover_csv(root, csv)
    if not root.is_dir():
        raise BiosegError(f"{root} is a file, not a dataset folder; {LAYOUTS_HELP}")
    if layout == "pairs":
        return _discover_pairs(root)
    if layout == "multitask":
        return discover_multitask(root)
    if layout == "zarr":
        return discover_zarr(root)
    return _discover_xy(root)


def _detect(root: Path, csv: str | Path | None) -> str:
    if csv is not None or (root.is_file() and root.suffix.lower() == ".csv"):
        return "csv"
    if root.is_dir():
        if (root / "images").is_dir():
            return "pairs"
        if (root / "train" / "x").is_dir():
            return "xy"
        if is_multitask(root):
            return "multitask"
        if is_zarr_collection(root):
            return "zarr"
        if len(_csv_files(root)) == 1:
            return "csv"
    found = ", ".join(sorted(p.name + ("/" if p.is_dir() else "") for p in visible_entries(root))[:8]) or "nothing"
    where = f"{root} holds {found}" if root.is_dir() else f"{root} is not a folder or a .csv file"
    raise BiosegError(f"no dataset layout recognised: {where}; {LAYOUTS_HELP}")


def _csv_files(folder: Path) -> list[Path]:
    return [p for p in visible_entries(folder) if p.is_file() and p.suffix.lower() == ".csv"]


def _by_stem(files: list[Path], label: str, problems: list[str]) -> dict[str, Path]:
    """Files keyed by stem; a stem held by two files (``7.png`` and ``7.tif``) is a problem."""
    groups: dict[str, list[Path]] = {}
    for f in files:
        groups.setdefault(f.stem, []).append(f)
    out = {}
    for stem, group in groups.items():
        if len(group) > 1:
            names = ", ".join(f"{label}/{g.name}" for g in group)
            problems.append(f"{names} share the name '{stem}': keep one of them (pairing is by file name)")
        else:
            out[stem] = group[0]
    return out


def _pair_folders(
    images_dir: Path, masks_dir: Path, label_x: str, label_y: str, prefix: str, by_order: bool
) -> tuple[list[Sample], list[str]]:
    """Pair the image files of two folders by stem (or, when ``by_order``, in sorted order)."""
    problems: list[str] = []
    image_list = image_files(images_dir)
    mask_files = image_files(masks_dir) if masks_dir.is_dir() else []
    if not image_list:
        problems.append(f"{label_x}/ holds no image files ({', '.join(IMAGE_SUFFIXES)}): add images there")
    if not masks_dir.is_dir():
        problems.append(
            f"{label_y}/ does not exist: add a mask for each image of {label_x}/ there "
            "(same file name, any image suffix)"
        )
        return [Sample(prefix + f.stem, f, None) for f in image_list], problems

    images = _by_stem(image_list, label_x, problems)
    masks = _by_stem(mask_files, label_y, problems)
    if by_order and set(images) != set(masks) and len(image_list) == len(mask_files):
        # BiaPy pairs x/ and y/ in sorted order whatever the names are
        pairs = zip(image_list, mask_files, strict=True)
        unique = [(x, y) for x, y in pairs if x.stem in images]  # a shared stem is already a problem
        return [Sample(prefix + x.stem, x, y) for x, y in unique], problems
    if by_order and set(images) != set(masks):
        problems.append(
            f"{label_x}/ has {len(image_list)} images but {label_y}/ has {len(mask_files)} masks: "
            "x and y pair in sorted order, so they must hold as many files (or the same names)"
        )
    samples = []
    for stem, image in images.items():
        mask = masks.get(stem)
        if mask is None:
            problems.append(
                f"{label_x}/{image.name} has no mask: add {label_y}/{stem}<.png|.tif|...> or remove the image"
            )
        samples.append(Sample(prefix + stem, image, mask))
    for stem, mask in masks.items():
        if stem not in images:
            problems.append(
                f"{label_y}/{mask.name} has no image: add {label_x}/{stem}<.png|.tif|...> or remove the mask"
            )
    return samples, problems


def _discover_pairs(root: Path) -> DatasetIndex:
    if not (root / "images").is_dir():
        raise BiosegError(f"{root} has no images/ folder, which the 'pairs' layout needs; {LAYOUTS_HELP}")
    samples, problems = _pair_folders(root / "images", root / "masks", "images", "masks", "", by_order=False)
    return DatasetIndex(root=root, layout="pairs", samples=_sorted(samples), presplit=None, problems=problems)


def _discover_xy(root: Path) -> DatasetIndex:
    if not (root / "train" / "x").is_dir():
        raise BiosegError(f"{root} has no train/x folder, which the 'xy' layout needs; {LAYOUTS_HELP}")
    samples: list[Sample] = []
    problems: list[str] = []
    presplit: dict[str, list[str]] = {}
    for part in PRESPLIT_PARTS:
        x_dir, y_dir = root / part / "x", root / part / "y"
        if not x_dir.is_dir():
            if y_dir.is_dir():
                problems.append(f"{part}/y exists but {part}/x does not: add the images as {part}/x")
            presplit[part] = []
            continue
        found, part_problems = _pair_folders(x_dir, y_dir, f"{part}/x", f"{part}/y", f"{part}/", by_order=True)
        samples += found
        problems += part_problems
        presplit[part] = sorted((s.name for s in found), key=natural_key)
    return DatasetIndex(root=root, layout="xy", samples=_sorted(samples), presplit=presplit, problems=problems)


def _find_csv(root: Path, csv: str | Path | None) -> Path:
    """The CSV file of the 'csv' layout: ``data.csv`` (relative to the dataset folder if not found as
    given), the root itself when it is a file, or the one .csv file in the root folder."""
    if csv is not None:
        csv_path = Path(csv)
        if not csv_path.is_absolute() and not csv_path.exists() and root.is_dir():
            csv_path = root / csv_path
    elif root.is_file():
        csv_path = root
    else:
        found = _csv_files(root)
        if len(found) != 1:
            names = ", ".join(p.name for p in found) or "none"
            raise BiosegError(
                f"{root} should hold exactly one .csv file for the 'csv' layout, found {names}: "
                "name the file with data.csv"
            )
        csv_path = found[0]
    if not csv_path.is_file():
        raise BiosegError(f"CSV file {csv_path} does not exist; check data.csv")
    return csv_path


def _read_csv_rows(csv_path: Path) -> list[dict[str, str]]:
    """The rows of the CSV with lower-case, stripped column names and stripped values; the header must
    name the columns image and mask."""
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv_module.DictReader(fh))
            header = [h.strip().lower() for h in (rows[0].keys() if rows else [])]
    except (OSError, UnicodeDecodeError, csv_module.Error) as err:
        raise BiosegError(f"{csv_path} cannot be read as a CSV file ({err}); save it as UTF-8 CSV") from None
    if not rows:
        raise BiosegError(f"{csv_path} holds no rows; it needs a header 'image,mask' and one row per sample")
    rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in rows]
    if "image" not in header or "mask" not in header:
        raise BiosegError(
            f"{csv_path} has columns {', '.join(header)}; it needs the columns image,mask "
            "(and optionally name), with paths relative to the CSV's folder"
        )
    return rows


def _discover_csv(root: Path, csv: str | Path | None) -> DatasetIndex:
    csv_path = _find_csv(root, csv)
    base = csv_path.parent
    rows = _read_csv_rows(csv_path)
    samples: list[Sample] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{csv_path.name} line {line}"
        if not row["image"]:
            problems.append(f"{where} has no image path: fill in the image column or remove the line")
            continue
        image = _resolve(base, row["image"])
        if not image.is_file():
            problems.append(f"{where}: image {row['image']} does not exist (relative to {base})")
            continue
        name = row.get("name") or Path(row["image"].replace("\\", "/")).with_suffix("").as_posix()
        if name in seen:
            problems.append(
                f"{where}: sample name '{name}' is already used on line {seen[name]}: "
                "remove the duplicate or give each line its own 'name'"
            )
            continue
        seen[name] = line
        mask = _resolve(base, row["mask"]) if row["mask"] else None
        if mask is None:
            problems.append(f"{where}: {row['image']} has no mask: fill in the mask column")
        elif not mask.is_file():
            problems.append(f"{where}: mask {row['mask']} does not exist (relative to {base})")
            mask = None
        samples.append(Sample(name, image, mask))
    return DatasetIndex(root=base, layout="csv", samples=_sorted(samples), presplit=None, problems=problems)


def _resolve(base: Path, text: str) -> Path:
    path = Path(text.replace("\\", "/"))  # CSVs written on Windows
    return path if path.is_absolute() else base / path


def _sorted(samples: list[Sample]) -> list[Sample]:
    return sorted(samples, key=lambda s: natural_key(s.name))
