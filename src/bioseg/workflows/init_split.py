"""The training images ``init-config`` measures its statistics on: those of fold 0 of the dataset's split,
making the default split (the one ``bioseg split`` makes) when there is none yet, so that test images
never shape the normalisation a model is then scored with."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from bioseg.data.layouts import DatasetIndex
from bioseg.data.splits import SplitOptions, compute_splits, make_splits, split_for
from bioseg.errors import BiosegError


def training_names(index: DatasetIndex, fold: int = 0) -> tuple[list[str], str]:
    """Names of the training samples of ``fold`` and a line that says where they come from.

    An existing split (``<root>/splits``, or the dataset's own train/ part) is used as it is; else the
    default split is made and written (:class:`SplitOptions` defaults, as ``bioseg split DIR``). A dataset
    too small for it, or one where the split cannot be written, gives every sample or the unwritten split,
    and the line says so.
    """
    folder = Path(index.root) / "splits"
    total = len(index.samples)
    if (folder / "test.txt").is_file() or (index.presplit and index.presplit.get("train") and not folder.exists()):
        train = split_for(index, None, fold)["train"]
        source = f"fold {fold} of {folder}" if folder.exists() else "the dataset's train/ part"
        return train, f"statistics from the {len(train)} training images of {source} ({total} images in all)"
    options = asdict(SplitOptions())
    try:
        train = compute_splits(index, **options)["folds"][fold]["train"]
    except BiosegError as err:
        return list(index.names), (
            f"statistics from all {total} images: no split yet and the default one does not fit ({err})"
        )
    default = f"{options['folds']} folds, test_split {options['test_split']}, seed {options['seed']}"
    try:
        out = make_splits(index, **options)
    except BiosegError:
        return train, (
            f"no split yet: the default one ({default}) could not be written to {folder}; statistics from its "
            f"{len(train)} training images of fold {fold}: write it elsewhere with 'bioseg split {index.root} "
            "-o FOLDER' and set data.splits_dir to FOLDER"
        )
    return train, (
        f"no split yet: made the default one ({default}) in {out}, as 'bioseg split' does; statistics from "
        f"its {len(train)} training images of fold {fold} ({total} images in all)"
    )
