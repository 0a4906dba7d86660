"""The masks of a multitask layout's heads (``masks/<head>/``): readable, their image's size, and holding
each head's classes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bioseg.data.check_report import jpeg_hint, mapping_text, size_text, values_text
from bioseg.data.layouts import DatasetIndex
from bioseg.data.preprocess import value_counts
from bioseg.io.images import ImageReadError, read_mask


def head_mask_problems(
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
            f"{name} ('{head}' mask) is {size_text(mask.shape)} but its image {image_name} is "
            f"{size_text(image.shape[1:])}; a mask must have its image's size: re-export the mask to match"
        ], value_counts(mask)
    return [], value_counts(mask)


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


def head_value_problems(counts: dict[str, dict[str, dict[int, int]]], heads: Mapping[str, Any] | None) -> list[str]:
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
        to_map = mapping_text({v: i for i, v in enumerate(union)}) if len(union) <= classes else "{raw: class, ...}"
        for file, c in files.items():
            bad = sorted(set(c) - set(mapping)) if mapping else [v for v in sorted(c) if not 0 <= v < classes]
            if mapping and bad:
                expected = f"{values_text(bad)} {'is' if len(bad) == 1 else 'are'} not in heads.{name}.mask_values"
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
            found = values_text(sorted(c))
            out.append(f"{file} ('{name}' mask) has values {found}; {expected}: {fix}{jpeg_hint(file)}")
    return out


def _mapping_problems(name: str, classes: int, mapping: dict[int, int]) -> list[str]:
    return [
        f"heads.{name}.mask_values maps {raw} to class {cls}, but head '{name}' has {classes} classes "
        f"(0..{classes - 1}): map the values onto 0..{classes - 1} or give the head more classes"
        for raw, cls in sorted(mapping.items())
        if not 0 <= cls < classes
    ]
