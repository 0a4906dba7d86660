"""What raw mask values mean: pixel shares, palettes of grey levels, files unlike their siblings and
anti-aliased binary masks; and the ``data.mask_threshold`` rule that turns the latter into 0/1.

Pure functions over value counts (raw value → pixels, per file) and, for anti-aliasing, the mask itself.

``data.mask_threshold`` is a fraction of each file's full scale, not a raw value: a pixel is class 1
where ``raw > threshold × full_scale``, the full scale being 1, 255 or 65535, the smallest of them that
holds the file's largest value. So 0/1 files and 0/255 files (anti-aliased or not) mix under one
threshold: 0.5 puts 1 of a 0/1 file and 128..255 of a 0/255 file in the foreground. A file with no
foreground (all 0) stays background whatever its scale; a relative-to-the-file's-maximum rule would
instead make the brightest grey of a faint or empty file foreground.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

FULL_SCALES = (1, 255, 65535)
#: anti-aliasing: at most this share of a file's pixels is between its two extremes ...
MAX_GREY_SHARE = 0.25
#: ... and at least this share of those lies within two pixels of both extremes (object borders)
MIN_BORDER_SHARE = 0.9


def full_scale(max_value: float) -> float:
    """1, 255 or 65535: the smallest that holds ``max_value`` (larger values: the value itself)."""
    return float(next((s for s in FULL_SCALES if max_value <= s), max_value))


def threshold_mask(raw: np.ndarray, threshold: float) -> np.ndarray:
    """``raw > threshold × full_scale(raw.max())`` as uint8 0/1 (``(*spatial)`` in, same shape out)."""
    raw = np.asarray(raw)
    top = float(raw.max()) if raw.size else 0.0
    return (raw > threshold * full_scale(top)).astype(np.uint8)


def value_shares(counts: Mapping[int, int]) -> dict[int, float]:
    """Raw value → percent of the pixels."""
    total = sum(counts.values())
    return {int(v): 100.0 * n / total for v, n in sorted(counts.items())} if total else {}


def is_palette(values: list[int]) -> bool:
    """At least three evenly spaced values, more than one apart (0, 32, …, 255 or 0, 85, 170, 255):
    grey levels that stand for structures, not class indices (0, 1, 2) or object ids."""
    values = sorted(int(v) for v in values)
    if len(values) < 3:
        return False
    even = np.linspace(values[0], values[-1], len(values))
    step = (values[-1] - values[0]) / (len(values) - 1)
    return step > 1.5 and bool(np.abs(np.array(values) - even).max() <= max(1.0, 0.05 * step))


def unlike_siblings(values_per_file: Mapping[str, set[int]], scale_ratio: float = 8.0) -> list[list[str]]:
    """Groups of files that hold their non-zero values on different scales (0/1 beside 0/255), largest
    group first; one group (or none) when the files agree.

    Files sharing a non-zero value are one group; groups whose largest values are less than
    ``scale_ratio`` apart are one too (files of class 1 beside files of class 2 are not unlike).
    """
    groups: list[tuple[set[int], list[str]]] = []
    for name, values in values_per_file.items():
        nonzero = {v for v in values if v != 0}
        if not nonzero:
            continue
        joined = [g for g in groups if g[0] & nonzero]
        merged = (set(nonzero).union(*(g[0] for g in joined)), [n for g in joined for n in g[1]] + [name])
        groups = [g for g in groups if g not in joined] + [merged]
    scaled: list[tuple[float, list[str]]] = []
    for values, names in sorted(groups, key=lambda g: max(g[0])):
        top = float(max(values))
        if scaled and top < scale_ratio * max(scaled[-1][0], 1e-9):
            scaled[-1] = (top, scaled[-1][1] + names)
        else:
            scaled.append((top, names))
    return [names for _, names in sorted(scaled, key=lambda g: -len(g[1]))]


@dataclass(frozen=True)
class AntiAliased:
    """A binary mask saved with grey levels along its borders: its two extremes and its greys."""

    low: int
    high: int
    grey_pixels: int

    @property
    def threshold(self) -> float:
        """The midpoint of the extremes as a fraction of the full scale (see the module)."""
        return (self.low + self.high) / 2 / full_scale(self.high)


def anti_aliased(mask: np.ndarray, counts: Mapping[int, int]) -> AntiAliased | None:
    """The extremes of a mask whose other values are few and lie where both extremes meet; else None.

    ``mask`` ``(*spatial)``; ``counts`` its value counts. Object ids and palettes fail the border test:
    their middle values fill whole regions, far from the lowest or the highest value.
    """
    values = sorted(counts)
    if len(values) < 3:
        return None
    low, high = values[0], values[-1]
    total = sum(counts.values())
    grey = total - counts[low] - counts[high]
    if grey > MAX_GREY_SHARE * total:
        return None
    structure = ndi.generate_binary_structure(mask.ndim, mask.ndim)
    near_low = ndi.binary_dilation(mask == low, structure, iterations=2)
    near_high = ndi.binary_dilation(mask == high, structure, iterations=2)
    between = (mask != low) & (mask != high)
    at_border = int((between & near_low & near_high).sum())
    return AntiAliased(int(low), int(high), grey) if at_border >= MIN_BORDER_SHARE * grey else None


@dataclass
class MaskAdvice:
    """What the raw values of a dataset's masks say: warnings, and the config keys that read them right
    (``classes``, ``mask_values``, ``mask_threshold``, with a ``comment`` for the YAML); ``None`` keys:
    nothing to suggest beyond the values as classes."""

    warnings: list[str]
    classes: list[str] | None = None
    mask_values: dict[int, int] | None = None
    mask_threshold: float | None = None
    comment: str | None = None


def every_value_mapping(values: list[int]) -> tuple[list[str], dict[int, int]]:
    """Each raw value its own class, named after the value (no value is assumed to be background)."""
    return [f"value_{v}" for v in values], {v: i for i, v in enumerate(values)}


def mask_advice(
    counts: Mapping[str, Mapping[int, int]], files: Mapping[str, str], aliased: Mapping[str, AntiAliased]
) -> MaskAdvice:
    """Warnings and suggested keys for masks given per sample: value ``counts``, file names, anti-aliasing."""
    values = sorted({v for c in counts.values() for v in c})
    groups = unlike_siblings({files.get(s, s): set(c) for s, c in counts.items()})
    warnings = [_siblings_warning(groups, counts, files)] if len(groups) > 1 else []
    if aliased and all(s in aliased or len(c) <= 2 for s, c in counts.items()):
        threshold = round(float(np.median([a.threshold for a in aliased.values()])), 4)
        warning = _aliased_warning(aliased, files, threshold)
        if len(groups) > 1:  # the threshold reads every scale: one warning says it all
            warning += "; the same threshold reads the files saved on another scale (0/1 beside 0/255) right"
        return MaskAdvice([warning], ["background", "foreground"], None, threshold, _THRESHOLD_COMMENT)
    if is_palette(values):
        shown = ", ".join(str(v) for v in values)
        warnings.insert(
            0,
            f"mask values {{{shown}}} are evenly spaced grey levels (a palette): each may stand for a structure "
            "and none is known to be background; map every value to its class with data.mask_values and name "
            "the classes (init-config writes one class per value to edit)",
        )
    if not warnings:
        return MaskAdvice([])
    classes, mapping = every_value_mapping(values)
    return MaskAdvice(warnings, classes, mapping, None, _MAPPING_COMMENT)


_THRESHOLD_COMMENT = (
    "anti-aliased binary masks: class 1 where raw > mask_threshold x full scale (1, 255 or 65535, "
    "the smallest that holds the file's largest value); re-save the masks as 0/1 to drop it"
)
_MAPPING_COMMENT = (
    "one class per raw mask value, none assumed to be background: edit mask_values and classes "
    "to merge values of the same class (e.g. 255: 1) and to name them"
)


def _aliased_warning(aliased: Mapping[str, AntiAliased], files: Mapping[str, str], threshold: float) -> str:
    sample, first = next(iter(aliased.items()))
    return (
        f"{len(aliased)} mask file(s) look like anti-aliased binary masks (e.g. {files.get(sample, sample)}: "
        f"{first.low} and {first.high} with {first.grey_pixels} grey pixels along object borders): read as "
        f"classes they would be wrong; set data.mask_threshold: {threshold:g} (class 1 where the value is above "
        f"{threshold:g} of the full scale 1, 255 or 65535), or re-save the masks without anti-aliasing"
    )


def _siblings_warning(groups: list[list[str]], counts: Mapping[str, Mapping[int, int]], files: Mapping[str, str]):
    by_file = {files.get(s, s): c for s, c in counts.items()}

    def values(names: list[str]) -> str:
        found = sorted({v for n in names for v in by_file[n]})
        return "{" + ", ".join(str(v) for v in found[:6]) + (", ..." if len(found) > 6 else "") + "}"

    usual, odd = groups[0], [n for g in groups[1:] for n in g]
    shown = ", ".join(odd[:3]) + (f" and {len(odd) - 3} more" if len(odd) > 3 else "")
    return (
        f"mask files disagree on their values: {shown} hold {values(odd)} while {len(usual)} other file(s) "
        f"hold {values(usual)} (the same classes saved on different scales, e.g. 0/1 beside 0/255?): map "
        "every value to its class with data.mask_values (e.g. {255: 1}), or for binary masks set "
        "data.mask_threshold: 0.5"
    )
