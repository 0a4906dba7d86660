"""What ``bioseg check`` found: every problem, one line each, and a summary of the dataset; and the few
formatting rules its lines share."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bioseg.data.mask_values import MaskAdvice, value_shares


@dataclass
class CheckReport:
    """What ``check_dataset`` found: ``problems`` (one line each) and a ``summary`` dict.

    Summary keys: ``root``, ``layout``, ``samples``, ``with_mask``, ``image_sizes`` (``min`` and
    ``max`` per axis, ``set`` of distinct sizes), ``channels`` and ``dtypes`` (value → number of
    images), ``mask_dtypes``, ``mask_values`` (sorted union of raw mask values), ``mask_value_pixels``
    (raw value → pixels), ``suggested_mask_values`` (sorted raw values → 0..n-1, or None when they
    already are 0..n-1), ``class_pixels`` and ``class_frequencies`` (class → pixels / fraction, after
    ``mask_values``), ``class_presence`` (sample name → sorted classes present), ``num_classes``,
    ``mask_values_map``, ``head_mask_values`` (multitask: head → sorted raw values of its masks),
    ``mask_threshold`` (the values are then those after it).

    ``warnings`` do not stop training but say what may be misread (mask values that look like a
    palette, files on different scales, anti-aliased masks, volumes without a voxel size);
    ``mask_advice`` holds the config keys that read such masks right.
    """

    problems: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    mask_advice: MaskAdvice | None = None

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
            shown = (
                size_text(distinct[0])
                if len(distinct) == 1
                else f"{len(distinct)} sizes from {size_text(sizes['min'])} to {size_text(sizes['max'])}"
            )
            channels = ", ".join(f"{c} channel{plural(c)} ({n})" for c, n in s["channels"].items())
            dtypes = ", ".join(f"{d} ({n})" for d, n in s["dtypes"].items())
            lines.append(f"images: {shown}; {channels}; {dtypes}")
        if s.get("mask_values") is not None and s.get("mask_dtypes"):
            lines.append(
                f"masks: {', '.join(s['mask_dtypes'])}; values {values_text(s['mask_values'])}"
                + (f" (data.mask_values: {mapping_text(mapped)})" if mapped else "")
            )
            lines.append(shares_line(s.get("mask_value_pixels") or {}, s.get("mask_threshold")))
        declared = s.get("num_classes") is not None or mapped is not None
        if s.get("class_frequencies") and declared:  # undeclared, the classes are the raw values listed above
            presence = Counter(c for classes in s["class_presence"].values() for c in classes)
            freqs = list(s["class_frequencies"].items())
            parts = [
                f"{c}: {100 * f:.1f}% of pixels, in {presence[c]} sample{plural(presence[c])}" for c, f in freqs[:8]
            ]
            if len(freqs) > 8:
                parts.append(f"... ({len(freqs)} in all)")
            lines.append("classes: " + "; ".join(parts))
        if s.get("head_mask_values"):
            lines.append("head masks: " + "; ".join(f"{h} {values_text(v)}" for h, v in s["head_mask_values"].items()))
        if self.warnings:
            lines.append(f"{len(self.warnings)} warning{plural(len(self.warnings))}:")
            lines += [f"- {w}" for w in self.warnings]
        if self.ok:
            lines.append("no problems found" + (" (but read the warnings above)" if self.warnings else ""))
        else:
            lines.append(f"{len(self.problems)} problem{plural(len(self.problems))}:")
            lines += [f"- {p}" for p in self.problems]
        return "\n".join(lines)


def shares_line(pixels: dict[int, int], threshold: float | None = None, limit: int = 24) -> str:
    """Every raw mask value with its share of the pixels (the first ``limit`` of many object ids)."""
    shares = list(value_shares(pixels).items())
    parts = [f"{v} {share_text(p)}" for v, p in shares[:limit]]
    if len(shares) > limit:
        parts.append(f"... ({len(shares)} values in all)")
    what = f"after data.mask_threshold {threshold:g}" if threshold is not None else "raw"
    return f"mask values ({what}, share of pixels): " + ", ".join(parts)


def share_text(percent: float) -> str:
    return f"{percent:.1f}%" if percent >= 0.1 or percent == 0 else f"{percent:.2g}%"


def values_text(values: list[int], limit: int = 10) -> str:
    if len(values) > limit:
        head = ", ".join(str(v) for v in values[: limit - 2])
        return f"{{{head}, ..., {values[-1]}}} ({len(values)} values)"
    return "{" + ", ".join(str(v) for v in values) + "}"


def mapping_text(mapping: dict[int, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(mapping.items())) + "}"


def plural(n: int) -> str:
    return "" if n == 1 else "s"


def size_text(shape: Any) -> str:
    return "×".join(str(int(v)) for v in shape)


def jpeg_hint(name: str) -> str:
    if name.lower().endswith((".jpg", ".jpeg")):
        return " (JPEG is lossy and changes mask values: save masks as PNG or TIFF)"
    return ""
