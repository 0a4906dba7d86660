"""Datasets with one mask per head: the seed's folder layout, and OME-Zarr stores with NGFF label images.

multitask: ``root/{train,val,test}/images/<id>.<ext>`` and ``root/<part>/masks/<head>/<id>_seg_<head>.tif``
(or ``<id>.<ext>``); head folders are discovered. zarr: ``root/*.zarr`` (or ``root/<part>/*.zarr``), each
store holding the image and one label image per head under ``labels/<head>``. A sample may lack a
head's mask: it is then trained on its other heads only.
"""

from __future__ import annotations

from pathlib import Path

from bioseg.data.samples import DatasetIndex, Sample, image_files, natural_key
from bioseg.errors import BiosegError

PARTS = ("train", "val", "test")


def _mask_for(head_dir: Path, stem: str) -> Path | None:
    head = head_dir.name
    for candidate in image_files(head_dir):
        if candidate.stem in (f"{stem}_seg_{head}", stem):
            return candidate
    return None


def is_multitask(root: Path) -> bool:
    return any((root / part / "images").is_dir() and (root / part / "masks").is_dir() for part in PARTS)


def is_zarr_collection(root: Path) -> bool:
    return any(root.glob("*.zarr")) or any(any((root / part).glob("*.zarr")) for part in PARTS)


def discover_multitask(root: Path) -> DatasetIndex:
    samples, problems, presplit = [], [], {}
    heads = sorted({d.name for part in PARTS for d in (root / part / "masks").glob("*") if d.is_dir()})
    if not heads:
        raise BiosegError(f"{root} has no masks/<head>/ folders; the multitask layout needs one folder per head")
    for part in PARTS:
        names = []
        for image in image_files(root / part / "images"):
            masks = {}
            for head in heads:
                found = _mask_for(root / part / "masks" / head, image.stem)
                if found is not None:
                    masks[head] = found
            if not masks:
                problems.append(f"{part}/images/{image.name} has no mask for any head ({', '.join(heads)})")
            name = f"{part}/{image.stem}"
            samples.append(Sample(name, image, None, masks))
            names.append(name)
        presplit[part] = sorted(names, key=natural_key)
    return DatasetIndex(root=root, layout="multitask", samples=samples, presplit=presplit, problems=problems)


def discover_zarr(root: Path) -> DatasetIndex:
    samples, presplit = [], {}
    parts = [p for p in PARTS if any((root / p).glob("*.zarr"))]
    for part in parts or [""]:
        folder = root / part if part else root
        names = []
        for store in sorted(folder.glob("*.zarr")):
            labels = store / "labels"
            masks = {d.name: d for d in sorted(labels.iterdir()) if d.is_dir()} if labels.is_dir() else {}
            name = f"{part}/{store.stem}" if part else store.stem
            samples.append(Sample(name, store, None, masks))
            names.append(name)
        if part:
            presplit[part] = sorted(names, key=natural_key)
    if parts:
        for part in PARTS:
            presplit.setdefault(part, [])
    problems = [f"{s.name}: the store has no labels/<head> image" for s in samples if not s.masks]
    return DatasetIndex(
        root=root, layout="zarr", samples=samples, presplit=presplit if parts else None, problems=problems
    )
