"""Train/validation/test splits: a fixed test set, then K cross-validation folds, saved as text files.

The split folder (``<root>/splits/`` by default) holds ``test.txt``, ``fold_<k>_train.txt`` and
``fold_<k>_val.txt`` (one sample name per line) and ``splits.json`` (the parameters and counts).
The split depends only on the sample names, the parameters and the seed, never on file order.

Sizes: a non-zero ``test_split`` takes ``max(1, round(test_split * n))`` samples; with ``folds > 1``
the rest is cut into K parts as equal as possible and fold k validates on part k; with ``folds == 1``
``val_split`` of the rest (at least one sample when non-zero) is the validation set.

A dataset that comes split (the ``xy`` layout) keeps its test set and its validation set; a test set
is carved from ``train`` only when the dataset has none, and folds are made only when it has no
validation set.

Stratified splits balance, for every class, the number of samples in which it is present across
the test set and the folds, with iterative stratification (Sechidis et al. 2011): the rarest class
is placed first, each of its samples going to the part that still lacks it most.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bioseg.data.layouts import DatasetIndex, natural_key
from bioseg.errors import BiosegError
from bioseg.io.folders import check_output_folder

SPLITS_VERSION = 1
_FOLD_FILE = re.compile(r"fold_(\d+)_(train|val)\.txt")


@dataclass(frozen=True)
class SplitOptions:
    """How a dataset is split; the keyword arguments of :func:`compute_splits` and :func:`make_splits`.

    ``folds``: cross-validation folds (1: one train/val cut of ``val_split``). ``test_split``: the
    fraction held out for testing (0: no test set). ``val_split``: with one fold, the fraction of the
    rest that validates. ``stratified`` balances the classes present per sample, which the functions'
    ``class_presence`` gives (``check_dataset(...).summary["class_presence"]``). ``seed``: the only
    source of randomness.
    """

    folds: int = 5
    test_split: float = 0.2
    val_split: float = 0.15
    stratified: bool = False
    seed: int = 0


def compute_splits(
    index: DatasetIndex, *, class_presence: dict[str, list[int]] | None = None, **options: Any
) -> dict[str, Any]:
    """The split without writing it: ``{"test": names, "folds": [{"train": names, "val": names}, ...]}``.

    Every list is sorted by name. ``options`` are the fields of :class:`SplitOptions`.
    """
    opts = SplitOptions(**options)
    _check_parameters(opts.folds, opts.test_split, opts.val_split)
    names = sorted(index.names, key=natural_key)
    if not names:
        raise BiosegError(f"the dataset {index.root} has no samples to split")
    labels = _labels(names, opts.stratified, class_presence)
    rng = np.random.default_rng(opts.seed)
    presplit = index.presplit or {}

    fixed_val = list(presplit.get("val") or [])
    fixed_test = list(presplit.get("test") or [])
    base = [n for n in names if n not in set(fixed_val) | set(fixed_test)]

    def too_few() -> BiosegError:
        return _too_few(index, len(base), bool(fixed_test), opts.folds, opts.test_split, opts.val_split)

    if fixed_test:
        test, pool = fixed_test, base
    else:
        test, pool = _cut_fraction(base, opts.test_split, labels, rng, too_few)
    if not pool:
        raise too_few()

    if fixed_val:
        fold_list = [{"train": pool, "val": fixed_val}]
    elif opts.folds > 1:
        fold_list = _cross_validation_folds(pool, opts.folds, labels, rng, too_few)
    else:
        val, train = _cut_fraction(pool, opts.val_split, labels, rng, too_few)
        fold_list = [{"train": train, "val": val}]

    def tidy(group: list[str]) -> list[str]:
        return sorted(group, key=natural_key)

    return {
        "test": tidy(test),
        "folds": [{"train": tidy(f["train"]), "val": tidy(f["val"])} for f in fold_list],
    }


def make_splits(
    index: DatasetIndex,
    *,
    class_presence: dict[str, list[int]] | None = None,
    out_dir: str | Path | None = None,
    **options: Any,
) -> Path:
    """Write the split files under ``out_dir`` (default ``index.root/splits``) and return that folder.

    ``options`` are the fields of :class:`SplitOptions`; ``class_presence`` (classes per sample) is
    needed by a stratified split and, when given, its counts per part are recorded in ``splits.json``.
    Fold files left by an earlier split with more folds are removed.
    """
    split = compute_splits(index, class_presence=class_presence, **options)
    info = _split_info(index, SplitOptions(**options), split, class_presence)
    out = Path(out_dir) if out_dir is not None else Path(index.root) / "splits"
    _write_split_files(out, split, info)
    return out


def load_split(splits_dir: str | Path, fold: int) -> dict[str, list[str]]:
    """``{"train": names, "val": names, "test": names}`` of fold ``fold`` from a split folder."""
    splits_dir = Path(splits_dir)
    hint = "run `bioseg split DATA_DIR` to make one"
    if not splits_dir.is_dir() or not (splits_dir / "test.txt").is_file():
        raise BiosegError(f"no split files in {splits_dir} (test.txt, fold_<k>_train.txt, ...): {hint}")
    matches = [_FOLD_FILE.fullmatch(p.name) for p in splits_dir.iterdir()]
    available = sorted(int(m.group(1)) for m in matches if m and m.group(2) == "val")
    train_file = splits_dir / f"fold_{fold}_train.txt"
    val_file = splits_dir / f"fold_{fold}_val.txt"
    if fold < 0 or not train_file.is_file() or not val_file.is_file():
        have = f"folds 0..{max(available)}" if available else "no folds"
        raise BiosegError(
            f"fold {fold} is not in {splits_dir}, which has {have}: choose data.fold among them, "
            f"or {hint} with more folds"
        )
    return {
        "train": _read_names(train_file),
        "val": _read_names(val_file),
        "test": _read_names(splits_dir / "test.txt"),
    }


# --- helpers -------------------------------------------------------------------------------------


def _cut_fraction(
    names: list[str],
    fraction: float,
    labels: dict[str, frozenset[int]] | None,
    rng: np.random.Generator,
    too_few: Callable[[], BiosegError],
) -> tuple[list[str], list[str]]:
    """``(part, rest)``: ``fraction`` of ``names`` (see :func:`_fraction_count`) and the rest, which must
    keep at least one sample."""
    n_part = _fraction_count(fraction, len(names))
    if len(names) - n_part < 1:
        raise too_few()
    part, rest = _divide(names, [n_part, len(names) - n_part], labels, rng)
    return part, rest


def _cross_validation_folds(
    pool: list[str],
    folds: int,
    labels: dict[str, frozenset[int]] | None,
    rng: np.random.Generator,
    too_few: Callable[[], BiosegError],
) -> list[dict[str, list[str]]]:
    """``folds`` parts of ``pool`` as equal as possible; fold k validates on part k, trains on the rest."""
    if len(pool) < folds:
        raise too_few()
    sizes = [len(pool) // folds + (k < len(pool) % folds) for k in range(folds)]
    parts = _divide(pool, sizes, labels, rng)
    return [
        {"train": [n for j, part in enumerate(parts) if j != k for n in part], "val": parts[k]}
        for k in range(folds)
    ]


def _split_info(
    index: DatasetIndex,
    opts: SplitOptions,
    split: dict[str, Any],
    class_presence: dict[str, list[int]] | None,
) -> dict[str, Any]:
    """The content of ``splits.json``: the parameters, where the dataset came from, and the counts."""
    info: dict[str, Any] = {
        "version": SPLITS_VERSION,
        "root": str(index.root),
        "layout": index.layout,
        "seed": opts.seed,
        "folds": len(split["folds"]),
        "folds_requested": opts.folds,
        "test_split": opts.test_split,
        "val_split": opts.val_split,
        "stratified": opts.stratified,
        "presplit": {k: bool(v) for k, v in (index.presplit or {}).items()} or None,
        "counts": {
            "samples": len(index.samples),
            "test": len(split["test"]),
            "folds": [{"train": len(f["train"]), "val": len(f["val"])} for f in split["folds"]],
        },
    }
    if class_presence is not None:
        info["class_presence"] = _presence_counts(split, class_presence)
    return info


def _write_split_files(out: Path, split: dict[str, Any], info: dict[str, Any]) -> None:
    """``test.txt``, ``fold_<k>_{train,val}.txt`` and ``splits.json`` in ``out``, replacing the fold files
    of an earlier split."""
    check_output_folder(out, "split folder")
    _refuse_read_only(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for old in out.iterdir():
            if _FOLD_FILE.fullmatch(old.name):
                old.unlink()
        _write_names(out / "test.txt", split["test"])
        for k, fold in enumerate(split["folds"]):
            _write_names(out / f"fold_{k}_train.txt", fold["train"])
            _write_names(out / f"fold_{k}_val.txt", fold["val"])
        (out / "splits.json").write_text(json.dumps(info, indent=2) + "\n")
    except OSError as err:
        raise BiosegError(
            f"cannot write the split files to {out} ({err.strerror or err}): "
            "choose a writable folder (data.splits_dir, or the split command's output option)"
        ) from None


def _refuse_read_only(out: Path) -> None:
    """Refuse to write into (or create in) a folder without write permission bits.

    Permission checks do not stop the superuser, so a dataset shipped read-only would otherwise get
    a splits/ folder written into it.
    """
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.is_dir() and not existing.stat().st_mode & 0o222:
        raise BiosegError(
            f"cannot write the split files to {out}: {existing} is read-only; choose a writable folder "
            "(data.splits_dir, or the split command's output option)"
        )


def _check_parameters(folds: int, test_split: float, val_split: float) -> None:
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 1:
        raise BiosegError(f"folds must be a whole number of at least 1, got {folds!r}")
    for label, value in (("test_split", test_split), ("val_split", val_split)):
        if not 0 <= value < 1:
            raise BiosegError(f"{label} must be a fraction in [0, 1), e.g. 0.2, got {value!r}")


def _fraction_count(fraction: float, n: int) -> int:
    """``fraction`` of ``n`` rounded half up; at least 1 when the fraction is not zero."""
    if fraction == 0 or n == 0:
        return 0
    return min(n, max(1, int(np.floor(fraction * n + 0.5))))


def _too_few(
    index: DatasetIndex, n_base: int, fixed_test: bool, folds: int, test_split: float, val_split: float
) -> BiosegError:
    """The error for a split that does not fit; ``n_base`` samples are what it is cut from."""
    needed = next(m for m in range(1, 1_000_000) if _feasible(m, fixed_test, folds, test_split, val_split))
    what = f"{folds} folds" if folds > 1 else f"a validation set (val_split {val_split})"
    if not fixed_test and test_split > 0:
        what = f"a test set (test_split {test_split}) and {what}"
    source = "the dataset" if index.presplit is None else "its train part"
    return BiosegError(
        f"{source} has {n_base} samples, too few for {what}: that needs at least {needed}; "
        "lower the folds or the fractions, or add samples"
    )


def _feasible(n: int, fixed_test: bool, folds: int, test_split: float, val_split: float) -> bool:
    """Whether ``n`` samples are enough for the split asked (``fixed_test``: the test set is given)."""
    pool = n if fixed_test else n - _fraction_count(test_split, n)
    if pool < 1:
        return False
    if folds > 1:
        return pool >= folds
    return pool - _fraction_count(val_split, pool) >= 1


def _labels(
    names: list[str], stratified: bool, class_presence: dict[str, list[int]] | None
) -> dict[str, frozenset[int]] | None:
    if not stratified:
        return None
    if class_presence is None:
        raise BiosegError(
            "a stratified split needs the classes present in each sample: pass class_presence "
            "(check_dataset(index, num_classes=...).summary['class_presence'])"
        )
    missing = [n for n in names if n not in class_presence]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise BiosegError(
            f"class_presence lacks {len(missing)} samples ({shown}): check the dataset again "
            "so that every sample has its classes"
        )
    return {n: frozenset(int(c) for c in class_presence[n]) for n in names}


def _divide(
    names: list[str], sizes: list[int], labels: dict[str, frozenset[int]] | None, rng: np.random.Generator
) -> list[list[str]]:
    """Cut ``names`` into parts of exactly ``sizes``: at random, or stratified by ``labels``."""
    order = [names[i] for i in rng.permutation(len(names))]
    if labels is None:
        cuts = np.cumsum([0, *sizes])
        return [order[cuts[j] : cuts[j + 1]] for j in range(len(sizes))]

    n = len(order)
    capacity = np.array(sizes, dtype=float)
    every = sorted({c for n_ in order for c in labels[n_]})
    totals = {c: sum(c in labels[n_] for n_ in order) for c in every}
    # how many samples holding each class each part still wants
    wanted = {c: capacity * totals[c] / n for c in every}
    parts: list[list[str]] = [[] for _ in sizes]
    remaining = list(order)

    def place(name: str, by: int | None) -> None:
        open_ = np.flatnonzero(capacity > 0)
        key = wanted[by][open_] if by is not None else capacity[open_]
        best = open_[np.isclose(key, key.max())]
        if len(best) > 1:  # tie: the emptiest part, then chance
            best = best[np.isclose(capacity[best], capacity[best].max())]
        j = int(best[rng.integers(len(best))]) if len(best) > 1 else int(best[0])
        parts[j].append(name)
        capacity[j] -= 1
        for c in labels[name]:
            wanted[c][j] -= 1

    while remaining:
        counts = {c: 0 for c in every}
        for name in remaining:
            for c in labels[name]:
                counts[c] += 1
        present = [c for c in every if counts[c] > 0]
        if not present:
            for name in remaining:
                place(name, None)
            break
        rarest = min(present, key=lambda c: (counts[c], c))
        holding = [name for name in remaining if rarest in labels[name]]
        for name in holding:
            place(name, rarest)
        taken = set(holding)
        remaining = [name for name in remaining if name not in taken]
    return parts


def _presence_counts(split: dict[str, Any], class_presence: dict[str, list[int]]) -> dict[str, dict[int, int]]:
    """Per part, class → number of samples in which it is present."""
    groups = {"test": split["test"]}
    for k, fold in enumerate(split["folds"]):
        groups[f"fold_{k}_val"] = fold["val"]
    out = {}
    for label, names in groups.items():
        tally: dict[int, int] = {}
        for name in names:
            for c in class_presence.get(name, []):
                tally[int(c)] = tally.get(int(c), 0) + 1
        out[label] = dict(sorted(tally.items()))
    return out


def _write_names(path: Path, names: list[str]) -> None:
    path.write_text("".join(f"{n}\n" for n in names))


def _read_names(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def split_for(index, splits_dir: Path | None, fold: int) -> dict[str, list[str]]:
    """The fold's split: from the split files when they exist, else the dataset's own train/val/test
    folders (x/y, multitask and zarr layouts), so such datasets train without 'bioseg split'."""
    folder = Path(splits_dir) if splits_dir is not None else Path(index.root) / "splits"
    if index.presplit and index.presplit.get("train") and not folder.is_dir():
        return {part: list(index.presplit.get(part, [])) for part in ("train", "val", "test")}
    return load_split(folder, fold)
