"""Check a dataset before training: read every file once and list every problem at once.

Each problem is one line that names the file (relative to the dataset folder), says what was found,
what was expected and how to fix it. The summary (sizes, channels, dtypes, mask values, class
frequencies, classes present per sample) is what ``init-config`` infers a config from and what
stratified splits balance.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from bioseg.data.check_report import CheckReport, jpeg_hint, mapping_text, plural, size_text, values_text
from bioseg.data.layouts import DatasetIndex
from bioseg.data.mask_values import AntiAliased, anti_aliased, mask_advice, threshold_mask
from bioseg.data.preprocess import value_counts
from bioseg.data.validate_heads import head_mask_problems, head_value_problems
from bioseg.io.images import ImageReadError, read_image, read_mask, read_voxel_size


def check_dataset(
    index: DatasetIndex,
    *,
    num_classes: int | None = None,
    mask_values: dict[int, int] | None = None,
    progress: bool = False,
    spatial_dims: int = 2,
    axes: str | None = None,
    heads: Mapping[str, Any] | None = None,
    mask_threshold: float | None = None,
    voxel_size: Sequence[float] | None = None,
) -> CheckReport:
    """Read every image and mask of ``index`` and report every problem together.

    With ``num_classes`` the mask values are checked against the classes ``0..num_classes-1``
    (after ``mask_values``, whose keys must then cover every value found); with ``num_classes=None``
    only structural problems are reported and the summary still lists the values found.
    ``progress`` shows a progress bar on stderr.

    A multitask layout's head masks (``masks/<head>/``) must have their image's size and hold class
    indices. ``heads`` declares each head's classes as a config does (``heads.<h>``: ``HeadConfig``
    objects or dicts with ``classes``, default 2, ``mask_values`` and ``source``, the mask folder when it
    is not the head's name); without it and without ``num_classes`` or ``mask_values`` (``bioseg check
    DIR``), a head's masks must together hold the classes 0..k-1 without a gap (at least 0 and 1; more
    than 10 values are object ids and not checked). ``num_classes`` or ``mask_values`` alone leave head
    values unchecked: they describe one mask per sample, and a head's own mapping is not known then.

    ``mask_threshold`` (``data.mask_threshold``) turns each mask into 0/1 before anything else. Without
    it and without ``mask_values``, what the raw values look like (a palette of grey levels, files on
    different scales, anti-aliased binary masks) gives ``warnings`` and ``mask_advice``. Volumes
    (``spatial_dims`` 3) without a voxel size in their files warn unless ``voxel_size`` is given.
    """
    scan = _scan(index, spatial_dims, axes, progress, mask_threshold)
    problems = list(index.problems) + scan.problems
    problems += _channel_problems(scan.channels, index)
    value_problems, suggestion = _value_problems(scan.counts, scan.mask_files, num_classes, mask_values, scan.aliased)
    problems += value_problems
    per_head = index.layout == "multitask"  # the other layouts hold one mask per image, for every head
    if per_head and (heads is not None or (num_classes is None and mask_values is None)):
        problems += head_value_problems(scan.head_counts, heads)
    summary = {
        "root": str(index.root),
        "layout": index.layout,
        "samples": len(index.samples),
        "with_mask": sum(s.mask is not None or bool(s.masks) for s in index.samples),
        **_image_summary(scan),
        "suggested_mask_values": suggestion,
        **_class_summary(scan.counts, mask_values),
        "num_classes": num_classes,
        "mask_values_map": dict(mask_values) if mask_values is not None else None,
        "head_mask_values": {
            h: sorted({v for c in f.values() for v in c}) for h, f in sorted(scan.head_counts.items())
        },
    }
    advice = None
    if mask_values is None and mask_threshold is None:
        advice = mask_advice(scan.counts, scan.mask_files, scan.aliased)
    warnings = (advice.warnings if advice else []) + _voxel_warnings(index, spatial_dims, voxel_size)
    summary["mask_threshold"] = mask_threshold
    return CheckReport(problems=problems, summary=summary, warnings=warnings, mask_advice=advice)


@dataclass
class _Scan:
    """What one pass over the files found: per-file problems and the statistics the summary is made of."""

    problems: list[str] = field(default_factory=list)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)
    dtypes: Counter[str] = field(default_factory=Counter)
    mask_dtypes: Counter[str] = field(default_factory=Counter)
    counts: dict[str, dict[int, int]] = field(default_factory=dict)  # sample → raw mask value → pixels
    mask_files: dict[str, str] = field(default_factory=dict)
    head_counts: dict[str, dict[str, dict[int, int]]] = field(default_factory=dict)  # head → file → counts
    aliased: dict[str, AntiAliased] = field(default_factory=dict)  # sample → anti-aliased mask's extremes


def _scan(index: DatasetIndex, spatial_dims: int, axes: str | None, progress: bool, threshold: float | None) -> _Scan:
    """Read every image and mask once."""
    scan = _Scan()
    mask_axes = axes.replace("C", "") if axes else None
    for sample in tqdm(index.samples, desc="checking", unit="sample", file=sys.stderr, disable=not progress):
        image_name = index.display(sample.image)
        image = None
        try:
            image = read_image(sample.image, spatial_dims=spatial_dims, axes=axes)
        except ImageReadError as err:
            scan.problems.append(f"{image_name} {err.reason}")
        if image is not None:
            scan.shapes[sample.name] = tuple(image.shape[1:])
            scan.channels[sample.name] = int(image.shape[0])
            scan.dtypes[str(image.dtype)] += 1
            scan.problems += _intensity_problems(image, image_name)
        for head, path in sample.masks.items() if index.layout == "multitask" else ():
            found, values = head_mask_problems(index, head, path, image, image_name, spatial_dims)
            scan.problems += found
            if values is not None:
                scan.head_counts.setdefault(head, {})[index.display(path)] = values
        if sample.mask is not None:
            _scan_mask(index, sample, image, image_name, (spatial_dims, mask_axes, threshold), scan)
    return scan


def _scan_mask(index, sample, image, image_name: str, reading: tuple, scan: _Scan) -> None:
    """``reading``: spatial dims, mask axes and ``data.mask_threshold``."""
    spatial_dims, axes, threshold = reading
    mask_name = index.display(sample.mask)
    try:
        mask = read_mask(sample.mask, spatial_dims=spatial_dims, axes=axes)
    except ImageReadError as err:
        scan.problems.append(f"{mask_name} {err.reason}")
        return
    scan.mask_dtypes[str(mask.dtype)] += 1
    scan.mask_files[sample.name] = mask_name
    if image is not None and tuple(mask.shape) != tuple(image.shape[1:]):
        scan.problems.append(
            f"{mask_name} is {size_text(mask.shape)} but its image {image_name} is {size_text(image.shape[1:])}; "
            "a mask must have its image's size: re-export the mask (or crop the image) to match"
        )
    if threshold is not None:
        mask = threshold_mask(mask, threshold)
    counts = scan.counts[sample.name] = value_counts(mask)
    found = anti_aliased(mask, counts) if threshold is None else None
    if found is not None:
        scan.aliased[sample.name] = found


def _image_summary(scan: _Scan) -> dict[str, Any]:
    sizes = list(scan.shapes.values())
    return {
        "image_sizes": {
            "min": [int(v) for v in np.min(sizes, axis=0)] if sizes else None,
            "max": [int(v) for v in np.max(sizes, axis=0)] if sizes else None,
            "set": sorted({tuple(int(v) for v in s) for s in sizes}),
        },
        "channels": dict(sorted(Counter(scan.channels.values()).items())),
        "dtypes": dict(sorted(scan.dtypes.items())),
        "mask_dtypes": dict(sorted(scan.mask_dtypes.items())),
    }


def _class_summary(counts: dict[str, dict[int, int]], mask_values: dict[int, int] | None) -> dict[str, Any]:
    """Raw mask values and, after ``mask_values``, the pixels, frequency and presence of each class."""
    raw_pixels: Counter[int] = Counter()
    class_pixels: Counter[int] = Counter()
    presence: dict[str, list[int]] = {}
    for name, c in counts.items():
        raw_pixels.update(c)
        present = set()
        for value, n in c.items():
            cls = value if mask_values is None else mask_values.get(value)
            if cls is not None and n > 0:
                class_pixels[cls] += n
                present.add(cls)
        presence[name] = sorted(present)
    total = sum(class_pixels.values())
    return {
        "mask_values": sorted(raw_pixels),
        "mask_value_pixels": dict(sorted(raw_pixels.items())),
        "class_pixels": dict(sorted(class_pixels.items())),
        "class_frequencies": {c: n / total for c, n in sorted(class_pixels.items())} if total else {},
        "class_presence": presence,
    }


# --- the checks ----------------------------------------------------------------------------------


def _intensity_problems(image: np.ndarray, name: str) -> list[str]:
    """Non-finite values, and images without any contrast (``(C, *spatial)``)."""
    out = []
    values = image
    if np.issubdtype(image.dtype, np.floating):
        finite = np.isfinite(image)
        if not finite.all():
            n_nan = int(np.isnan(image).sum())
            n_inf = int((~finite).sum()) - n_nan
            out.append(
                f"{name} holds {n_nan} NaN and {n_inf} infinite values; images must be finite: "
                "replace them (e.g. with 0) and save the image again"
            )
            values = image[finite]
    if values.size and values.min() == values.max():
        out.append(
            f"{name} is constant (every pixel is {values.flat[0]:g}); a constant image has nothing to "
            "learn from: remove it (and its mask) or re-export it"
        )
    return out


def _voxel_warnings(index: DatasetIndex, spatial_dims: int, voxel_size: Sequence[float] | None) -> list[str]:
    """Volumes whose files give no voxel size, when the config gives none either."""
    if spatial_dims != 3 or voxel_size is not None:
        return []
    missing = []
    for sample in index.samples:
        try:
            if read_voxel_size(sample.image) is None:
                missing.append(index.display(sample.image))
        except ImageReadError:
            continue  # reading the image already reported it
    if not missing:
        return []
    shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
    return [
        f"{len(missing)} of {len(index.samples)} volumes have no voxel size in their metadata ({shown}): z is "
        "then taken to be as fine as y and x (pooling, lengths in voxels); give it in micrometres with "
        "'bioseg init-config DIR --voxel-size Z,Y,X', data.voxel_size: [z, y, x] in the config, or "
        "--set data.voxel_size=[z,y,x] when training"
    ]


def _channel_problems(channels: dict[str, int], index: DatasetIndex) -> list[str]:
    if len(set(channels.values())) <= 1:
        return []
    tally = Counter(channels.values())
    usual, n_usual = max(tally.items(), key=lambda kv: (kv[1], -kv[0]))
    out = []
    for sample in index.samples:
        c = channels.get(sample.name)
        if c is not None and c != usual:
            out.append(
                f"{index.display(sample.image)} has {c} channel{plural(c)} but "
                f"{n_usual} of {len(channels)} images have {usual}: every image needs the same channels "
                f"(convert this one to {usual} channel{plural(usual)}, or the others)"
            )
    return out


def _value_problems(
    counts: dict[str, dict[int, int]],
    mask_files: dict[str, str],
    num_classes: int | None,
    mask_values: dict[int, int] | None,
    aliased: Mapping[str, AntiAliased],
) -> tuple[list[str], dict[int, int] | None]:
    """Mask values outside the classes; also the suggested mapping of the values found."""

    def hint(name: str) -> str:
        if name in aliased:  # stray values along borders: a threshold reads them, a mapping cannot
            return f" (it looks anti-aliased: set data.mask_threshold: {aliased[name].threshold:g} instead)"
        return jpeg_hint(mask_files[name])

    union = sorted({v for c in counts.values() for v in c})
    suggestion = {v: i for i, v in enumerate(union)} if union != list(range(len(union))) else None
    out: list[str] = []
    if mask_values is not None:
        if num_classes is not None:
            for raw, cls in sorted(mask_values.items()):
                if not 0 <= cls < num_classes:
                    out.append(
                        f"data.mask_values maps {raw} to class {cls}, but there are {num_classes} classes "
                        f"(0..{num_classes - 1}): map the values onto 0..{num_classes - 1} or add classes"
                    )
        for name, c in counts.items():
            unknown = sorted(set(c) - set(mask_values))
            if unknown:
                example = {**mask_values, **{v: "?" for v in unknown}}
                out.append(
                    f"{mask_files[name]} has values {values_text(sorted(c))}; {values_text(unknown)} "
                    f"{'is' if len(unknown) == 1 else 'are'} not in data.mask_values "
                    f"{mapping_text(mask_values)}: add {'it' if len(unknown) == 1 else 'them'} "
                    f"(data.mask_values: {mapping_text(example)}) or fix the mask{hint(name)}"
                )
        return out, suggestion
    if num_classes is None:
        return out, suggestion
    if len(union) <= num_classes:
        fix = f"add data.mask_values: {mapping_text(suggestion or {})}"
    else:
        fix = (
            f"the masks hold {len(union)} distinct values for {num_classes} classes: declare more classes "
            "(data.classes), or map the values onto classes with data.mask_values"
        )
    for name, c in counts.items():
        bad = [v for v in c if not 0 <= v < num_classes]
        if bad:
            out.append(
                f"{mask_files[name]} has values {values_text(sorted(c))}; a mask must hold class indices "
                f"0..{num_classes - 1}: {fix}{hint(name)}"
            )
    return out, suggestion
