"""The training images ``init-config`` measures its statistics on: those of fold 0 of the dataset's split,
making the default split (the one ``bioseg split`` makes) when there is none yet, so that test images
never shape the normalisation a model is then scored with."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from bioseg.data.layouts import DatasetIndex
from bioseg.data.splits import SplitOptions, compute_splits, make_splits, split_for
from bioseg.errors import BiosegError


def training_names(
    index: DatasetIndex, fold: int = 0, elsewhere: Path | None = None
) -> tuple[list[str], str, Path | None]:
    """Names of the training samples of ``fold``, a line that says where they come from, and the split
    folder the config must name in ``data.splits_dir`` (None: the default ``<root>/splits``, or no split).

    An existing split (``<root>/splits``, or the dataset's own train/ part) is used as it is; else the
    default split is made and written (:class:`SplitOptions` defaults, as ``bioseg split DIR``), to
    ``elsewhere`` when the dataset folder is read-only. A dataset too small for it, or a split that cannot
    be written anywhere, gives every sample or the unwritten split, and the line says so.
    """
    folder = Path(index.root) / "splits"
    total = len(index.samples)
    if (folder / "test.txt").is_file() or (index.presplit and index.presplit.get("train") and not folder.exists()):
        train = split_for(index, None, fold)["train"]
        source = f"fold {fold} of {folder}" if folder.exists() else "the dataset's train/ part"
        return train, f"statistics from the {len(train)} training images of {source} ({total} images in all)", None
    options = asdict(SplitOptions())
    try:
        train = compute_splits(index, **options)["folds"][fold]["train"]
    except BiosegError as err:
        return list(index.names), (
            f"statistics from all {total} images: no split yet and the default one does not fit ({err})"
        ), None
    default = f"{options['folds']} folds, test_split {options['test_split']}, seed {options['seed']}"
    made = f"statistics from its {len(train)} training images of fold {fold} ({total} images in all)"
    try:
        out = make_splits(index, **options)
    except BiosegError:
        pass
    else:
        return train, f"no split yet: made the default one ({default}) in {out}, as 'bioseg split' does; {made}", None
    if elsewhere is not None:
        try:  # a read-only dataset (a shared drive): the split lives beside the config, which names it
            out = make_splits(index, out_dir=elsewhere, **options)
        except BiosegError:
            pass
        else:
            return train, (
                f"no split yet and {folder} cannot be written: made the default one ({default}) in {out} and "
                f"set data.splits_dir to it; {made}"
            ), out
    return train, (
        f"no split yet: the default one ({default}) could not be written to {folder}; statistics from its "
        f"{len(train)} training images of fold {fold}: write it elsewhere with 'bioseg split {index.root} "
        "-o FOLDER' and set data.splits_dir to FOLDER"
    ), None
