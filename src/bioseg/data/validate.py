"""Check a dataset before training: read every file once and list every problem at once.

Each problem is one line that names the file (relative to the dataset folder), says what was found,
what was expected and how to fix it. The summary (sizes, channels, dtypes, mask values, class
frequencies, classes present per sample) is what ``init-config`` infers a config from and what
stratified splits balance.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from bioseg.data.layouts import DatasetIndex
from bioseg.io.images import ImageReadError, read_image, read_mask


@dataclass
class CheckReport:
    """What ``check_dataset`` found: ``problems`` (one line each) and a ``summary`` dict.

    Summary keys: ``root``, ``layout``, ``samples``, ``with_mask``, ``image_sizes`` (``min`` and
    ``max`` per axis, ``set`` of distinct sizes), ``channels`` and ``dtypes`` (value → number of
    images), ``mask_dtypes``, ``mask_values`` (sorted union of raw mask values), ``mask_value_pixels``
    (raw value → pixels), ``suggested_mask_values`` (sorted raw values → 0..n-1, or None when they
    already are 0..n-1), ``class_pixels`` and ``class_frequencies`` (class → pixels / fraction, after
    ``mask_values``), ``class_presence`` (sample name → sorted classes present), ``num_classes``,
    ``mask_values_map``, ``head_mask_values`` (multitask: head → sorted raw values of its masks).
    """

    problems: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        """A short human summary, then every problem on its own line."""
        s = self.summary
        lines = [
            f"dataset {s.get('root')} ({s.get('layout')} layout): {s.get('samples', 0)} samples, "
            f"{s.get('with_mask', 0)} with masks"
        ]
        sizes = s.get("image_sizes") or {}
        mapped = s.get("mask_values_map")
        if sizes.get("set"):
            distinct = sizes["set"]
            size_text = (
                _size(distinct[0])
                if len(distinct) == 1
                else f"{len(distinct)} sizes from {_size(sizes['min'])} to {_size(sizes['max'])}"
            )
            channels = ", ".join(f"{c} channel{_s(c)} ({n})" for c, n in s["channels"].items())
            dtypes = ", ".join(f"{d} ({n})" for d, n in s["dtypes"].items())
            lines.append(f"images: {size_text}; {channels}; {dtypes}")
        if s.get("mask_values") is not None and s.get("mask_dtypes"):
            lines.append(
                f"masks: {', '.join(s['mask_dtypes'])}; values {_values(s['mask_values'])}"
                + (f" (data.mask_values: {_mapping(mapped)})" if mapped else "")
            )
        if s.get("class_frequencies"):
            presence = Counter(c for classes in s["class_presence"].values() for c in classes)
            freqs = list(s["class_frequencies"].items())
            parts = [f"{c}: {100 * f:.1f}% of pixels, in {presence[c]} sample{_s(presence[c])}" for c, f in freqs[:8]]
            if len(freqs) > 8:
                parts.append(f"... ({len(freqs)} in all)")
            declared = s.get("num_classes") is not None or mapped is not None
            lines.append(("classes: " if declared else "mask values: ") + "; ".join(parts))
        if s.get("head_mask_values"):
            lines.append("head masks: " + "; ".join(f"{h} {_values(v)}" for h, v in s["head_mask_values"].items()))
        if self.ok:
            lines.append("no problems found")
        else:
            lines.append(f"{len(self.problems)} problem{_s(len(self.problems))}:")
            lines += [f"- {p}" for p in self.problems]
        return "\n".join(lines)


def check_dataset(
    index: DatasetIndex,
    *,
    num_classes: int | None = None,
    mask_values: dict[int, int] | None = None,
    progress: bool = False,
    spatial_dims: int = 2,
    axes: str | None = None,
    heads: Mapping[str, Any] | None = None,
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
    """
    problems = list(index.problems)
    shapes: dict[str, tuple[int, ...]] = {}
    channels: dict[str, int] = {}
    dtypes: Counter[str] = Counter()
    mask_dtypes: Counter[str] = Counter()
    counts: dict[str, dict[int, int]] = {}  # sample → raw mask value → pixels
    mask_files: dict[str, str] = {}
    head_counts: dict[str, dict[str, dict[int, int]]] = {}  # head folder → mask file → raw value → pixels

    bar = tqdm(index.samples, desc="checking", unit="sample", file=sys.stderr, disable=not progress)
    for sample in bar:
        image_name = index.display(sample.image)
        image = None
        try:
            image = read_image(sample.image, spatial_dims=spatial_dims, axes=axes)
        except ImageReadError as err:
            problems.append(f"{image_name} {err.reason}")
        if image is not None:
            shapes[sample.name] = tuple(image.shape[1:])
            channels[sample.name] = int(image.shape[0])
            dtypes[str(image.dtype)] += 1
            problems += _intensity_problems(image, image_name)
        for head, path in sample.masks.items() if index.layout == "multitask" else ():
            found, values = _head_mask_problems(index, head, path, image, image_name, spatial_dims)
            problems += found
            if values is not None:
                head_counts.setdefault(head, {})[index.display(path)] = values
        if sample.mask is None:
            continue
        mask_name = index.display(sample.mask)
        try:
            mask = read_mask(sample.mask, spatial_dims=spatial_dims, axes=axes.replace("C", "") if axes else None)
        except ImageReadError as err:
            problems.append(f"{mask_name} {err.reason}")
            continue
        mask_dtypes[str(mask.dtype)] += 1
        mask_files[sample.name] = mask_name
        if image is not None and tuple(mask.shape) != tuple(image.shape[1:]):
            problems.append(
                f"{mask_name} is {_size(mask.shape)} but its image {image_name} is {_size(image.shape[1:])}; "
                "a mask must have its image's size: re-export the mask (or crop the image) to match"
            )
        counts[sample.name] = _value_counts(mask)
    bar.close()

    problems += _channel_problems(channels, index)
    value_problems, suggestion = _value_problems(counts, mask_files, num_classes, mask_values)
    problems += value_problems
    if heads is not None or (num_classes is None and mask_values is None):
        problems += _head_value_problems(head_counts, heads)

    raw_pixels: Counter[int] = Counter()
    for c in counts.values():
        raw_pixels.update(c)
    class_pixels: Counter[int] = Counter()
    presence: dict[str, list[int]] = {}
    for name, c in counts.items():
        present = set()
        for value, n in c.items():
            cls = value if mask_values is None else mask_values.get(value)
            if cls is not None and n > 0:
                class_pixels[cls] += n
                present.add(cls)
        presence[name] = sorted(present)
    total = sum(class_pixels.values())

    sizes = list(shapes.values())
    summary: dict[str, Any] = {
        "root": str(index.root),
        "layout": index.layout,
        "samples": len(index.samples),
        "with_mask": sum(s.mask is not None or bool(s.masks) for s in index.samples),
        "image_sizes": {
            "min": [int(v) for v in np.min(sizes, axis=0)] if sizes else None,
            "max": [int(v) for v in np.max(sizes, axis=0)] if sizes else None,
            "set": sorted({tuple(int(v) for v in s) for s in sizes}),
        },
        "channels": dict(sorted(Counter(channels.values()).items())),
        "dtypes": dict(sorted(dtypes.items())),
        "mask_dtypes": dict(sorted(mask_dtypes.items())),
        "mask_values": sorted(raw_pixels),
        "mask_value_pixels": dict(sorted(raw_pixels.items())),
        "suggested_mask_values": suggestion,
        "class_pixels": dict(sorted(class_pixels.items())),
        "class_frequencies": {c: n / total for c, n in sorted(class_pixels.items())} if total else {},
        "class_presence": presence,
        "num_classes": num_classes,
        "mask_values_map": dict(mask_values) if mask_values is not None else None,
        "head_mask_values": {h: sorted({v for c in f.values() for v in c}) for h, f in sorted(head_counts.items())},
    }
    return CheckReport(problems=problems, summary=summary)


# --- the checks ----------------------------------------------------------------------------------


def _head_mask_problems(
    index: DatasetIndex, head: str, path: Path, image: np.ndarray | None, image_name: str, spatial_dims: int
) -> tuple[list[str], dict[int, int] | None]:
    """A multitask head's own mask: readable and its image's size; also its values (raw value → pixels),
    None when it cannot be read."""
    name = index.display(path)
    try:
        mask = read_mask(path, spatial_dims=spatial_dims)
    except ImageReadError as err:
        return [f"{name} ('{head}' mask) {err.reason}"], None
    if image is not None and tuple(mask.shape) != tuple(image.shape[1:]):
        return [
            f"{name} ('{head}' mask) is {_size(mask.shape)} but its image {image_name} is "
            f"{_size(image.shape[1:])}; a mask must have its image's size: re-export the mask to match"
        ], _value_counts(mask)
    return [], _value_counts(mask)


def _head_specs(heads: Mapping[str, Any]) -> dict[str, tuple[str, int, dict[int, int] | None]]:
    """Mask folder → (head name, classes, mask_values) of each declared head."""

    def get(spec: Any, key: str, default: Any) -> Any:
        value = spec.get(key, default) if isinstance(spec, Mapping) else getattr(spec, key, default)
        return default if value is None else value

    specs = {}
    for name, spec in heads.items():
        mapping = get(spec, "mask_values", None)
        specs[str(get(spec, "source", name))] = (name, int(get(spec, "classes", 2)), mapping and dict(mapping))
    return specs


def _head_value_problems(counts: dict[str, dict[str, dict[int, int]]], heads: Mapping[str, Any] | None) -> list[str]:
    """Head mask values that are not the head's classes: those ``heads`` declares, else those its masks
    imply (0..k-1 without a gap, k at least 2: a binary head holds 0 and 1)."""
    out = []
    specs = _head_specs(heads) if heads is not None else {}
    for folder, (name, _, _) in sorted(specs.items()):
        if folder not in counts:
            out.append(
                f"head '{name}' has no masks: no sample has a masks/{folder}/ file; add the head's masks "
                f"(or name their folder in heads.{name}.source), or remove the head"
            )
    for folder, files in counts.items():
        union = sorted({v for c in files.values() for v in c})
        if folder in specs:
            name, classes, mapping = specs[folder]
        elif heads is None and len(union) <= 10:  # more values are object ids (as init-config tells them)
            name, classes, mapping = folder, max(2, next(k for k in range(len(union) + 1) if k not in union)), None
        else:  # a folder that no declared head reads, or object ids
            continue
        out += _mapping_problems(name, classes, mapping) if mapping else []
        # a one-to-one mapping is only a fix when the head has a class for every value found
        to_map = _mapping({v: i for i, v in enumerate(union)}) if len(union) <= classes else "{raw: class, ...}"
        for file, c in files.items():
            bad = sorted(set(c) - set(mapping)) if mapping else [v for v in sorted(c) if not 0 <= v < classes]
            if mapping and bad:
                expected = f"{_values(bad)} {'is' if len(bad) == 1 else 'are'} not in heads.{name}.mask_values"
                fix = f"add {'it' if len(bad) == 1 else 'them'} to the mapping or fix the mask"
            elif bad:
                expected = (
                    f"head '{name}' has {classes} classes, so its masks must hold 0..{classes - 1}"
                    if folder in specs
                    else f"the '{name}' masks must hold class indices 0..{classes - 1} without a gap"
                )
                fix = f"fix the mask, or map the values in the config (heads.{name}.mask_values: {to_map})"
            else:
                continue
            out.append(f"{file} ('{name}' mask) has values {_values(sorted(c))}; {expected}: {fix}{_jpeg_hint(file)}")
    return out


def _mapping_problems(name: str, classes: int, mapping: dict[int, int]) -> list[str]:
    return [
        f"heads.{name}.mask_values maps {raw} to class {cls}, but head '{name}' has {classes} classes "
        f"(0..{classes - 1}): map the values onto 0..{classes - 1} or give the head more classes"
        for raw, cls in sorted(mapping.items())
        if not 0 <= cls < classes
    ]


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
                f"{index.display(sample.image)} has {c} channel{_s(c)} but "
                f"{n_usual} of {len(channels)} images have {usual}: every image needs the same channels "
                f"(convert this one to {usual} channel{_s(usual)}, or the others)"
            )
    return out


def _value_problems(
    counts: dict[str, dict[int, int]],
    mask_files: dict[str, str],
    num_classes: int | None,
    mask_values: dict[int, int] | None,
) -> tuple[list[str], dict[int, int] | None]:
    """Mask values outside the classes; also the suggested mapping of the values found."""
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
                    f"{mask_files[name]} has values {_values(sorted(c))}; {_values(unknown)} "
                    f"{'is' if len(unknown) == 1 else 'are'} not in data.mask_values "
                    f"{_mapping(mask_values)}: add {'it' if len(unknown) == 1 else 'them'} "
                    f"(data.mask_values: {_mapping(example)}) or fix the mask{_jpeg_hint(mask_files[name])}"
                )
        return out, suggestion
    if num_classes is None:
        return out, suggestion
    if len(union) <= num_classes:
        fix = f"add data.mask_values: {_mapping(suggestion or {})}"
    else:
        fix = (
            f"the masks hold {len(union)} distinct values for {num_classes} classes: declare more classes "
            "(data.classes), or map the values onto classes with data.mask_values"
        )
    for name, c in counts.items():
        bad = [v for v in c if not 0 <= v < num_classes]
        if bad:
            out.append(
                f"{mask_files[name]} has values {_values(sorted(c))}; a mask must hold class indices "
                f"0..{num_classes - 1}: {fix}{_jpeg_hint(mask_files[name])}"
            )
    return out, suggestion


def _value_counts(mask: np.ndarray) -> dict[int, int]:
    """Raw value → pixels; bincount when the values are small non-negative integers (fast)."""
    if mask.size and mask.dtype.kind in "ui" and mask.min() >= 0 and mask.max() < 1 << 20:
        hist = np.bincount(mask.ravel())
        return {int(v): int(hist[v]) for v in np.flatnonzero(hist)}
    values, n = np.unique(mask, return_counts=True)
    return {int(v): int(k) for v, k in zip(values, n, strict=True)}


# --- formatting ----------------------------------------------------------------------------------


def _values(values: list[int], limit: int = 10) -> str:
    if len(values) > limit:
        head = ", ".join(str(v) for v in values[: limit - 2])
        return f"{{{head}, ..., {values[-1]}}} ({len(values)} values)"
    return "{" + ", ".join(str(v) for v in values) + "}"


def _mapping(mapping: dict[int, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(mapping.items())) + "}"


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _size(shape: Any) -> str:
    return "×".join(str(int(v)) for v in shape)


def _jpeg_hint(name: str) -> str:
    if name.lower().endswith((".jpg", ".jpeg")):
        return " (JPEG is lossy and changes mask values: save masks as PNG or TIFF)"
    return ""
