"""``post.instances``: how predicted maps become objects. The one definition of these options.

The config key, the Python API (:func:`bioseg.postprocess.instances.boundaries_to_instances` and
:func:`~bioseg.postprocess.instances.foreground_to_instances` take this model) and the options of
``bioseg instances`` (help texts and defaults read from the fields below) all use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from bioseg.config.lengths import Length, length_in_voxels, normal_length, parse_length
from bioseg.config.section import Section

#: options only the boundary mode reads (watershed of the boundary map, then agglomeration)
BOUNDARY_ONLY = ("boundary_head", "agglomeration", "merge_threshold", "beta", "weight_by_size")
#: options only the foreground mode reads
FOREGROUND_ONLY = ("foreground_method",)
#: options of the seeds of a watershed; the foreground mode's connected components have none
SEED_OPTIONS = ("seed_method", "h", "min_distance", "sigma_seeds")


def unused_options(mode: str, foreground_method: str, keys: Iterable[str]) -> list[str]:
    """Those of ``keys`` (option names) that ``mode`` does not read, in the order of the fields."""
    if mode == "foreground":
        unused = BOUNDARY_ONLY + (SEED_OPTIONS if foreground_method == "components" else ())
    elif mode == "boundary":
        unused = FOREGROUND_ONLY
    else:
        unused = ()
    keys = set(keys)
    return [name for name in InstanceConfig.model_fields if name in unused and name in keys]


def unused_message(names: list[str], mode: str, foreground_method: str, spell: Callable[[str], str] = str) -> str:
    """One line refusing the options ``names`` that ``mode`` does not read; ``spell`` writes an option's
    name (the command line writes ``--merge-threshold`` for ``merge_threshold``)."""
    one = len(names) == 1
    where = f"{spell('mode')} {mode}"
    fix = "choose the mode that reads " + ("it" if one else "them")
    if mode == "foreground" and foreground_method == "components" and set(names) & set(SEED_OPTIONS):
        where += f" with {spell('foreground_method')} components"
        if set(names) <= set(SEED_OPTIONS):
            fix = f"use {spell('foreground_method')} watershed"
    return (
        f"{', '.join(spell(n) for n in names)} {'is' if one else 'are'} not read in {where} and would be "
        f"ignored; remove {'it' if one else 'them'} or {fix}"
    )


def _is_voxels(value: object) -> bool:
    try:
        return parse_length(value)[1] == "voxels"
    except ValueError:
        return True


class InstanceConfig(Section):
    """From predicted maps to objects (see :mod:`bioseg.postprocess.instances`).

    ``boundary``: watershed of a boundary head's map from seeds in the distance to the boundaries,
    restricted to the foreground head's mask when there is one, then agglomeration; ``foreground``:
    connected components of the foreground head's map, or a watershed of its distance transform from
    the same seeds. Options that the chosen mode does not read are refused when set to something else
    than their default, so that no choice is silently ignored.

    Lengths (``h``, ``min_distance``, ``sigma_seeds``) say their unit (:mod:`bioseg.config.lengths`): a
    number is voxels of the finest axis, whether or not a voxel size is known, and ``"0.5 um"`` is
    micrometres. Sizes (``min_size``, ``max_size``) are counts of voxels.
    """

    mode: Literal["off", "boundary", "foreground"] = Field(
        default="off", description="off; boundary: watershed + agglomeration; foreground: split blobs"
    )
    boundary_head: str | None = Field(
        default=None, description="boundary mode: head of the boundary map; None: the first boundary/three_class head"
    )
    foreground_head: str | None = Field(
        default=None, description="head of the foreground map (boundary mode: the mask); None: the first that fits"
    )
    threshold: float = Field(
        default=0.5, gt=0, lt=1, description="probability above which a voxel is boundary (or foreground)"
    )
    foreground_method: Literal["components", "watershed"] = Field(
        default="watershed",
        description="foreground mode: connected components, or a distance watershed that splits touching objects",
    )
    seed_method: Literal["h_maxima", "min_distance"] = Field(
        default="h_maxima",
        description="seeds in the smoothed distance map: h_maxima (peaks rising h above their saddle) "
        "or min_distance (peaks min_distance voxels apart)",
    )
    h: Length = Field(
        default=1.0,
        description="h_maxima: least height of a seed above its saddle in the distance map; "
        "a number: voxels of the finest axis; '0.5 um': micrometres (needs a voxel size)",
    )
    min_distance: int | str = Field(
        default=3,
        description="min_distance: least distance between seeds, whole voxels along each axis; "
        "'2 um': micrometres, in voxels of the finest axis (rounded)",
    )
    sigma_seeds: Length = Field(
        default=1.0,
        description="Gaussian smoothing of the distance map before seeding, voxels of the finest axis "
        "(round in physical space); '0.5 um': micrometres; 0: none",
    )
    agglomeration: Literal["average", "multicut", "none"] = Field(
        default="average", description="boundary mode: how regions merge: average, multicut or none"
    )
    merge_threshold: float = Field(
        default=0.5, ge=0, le=1, description="average: regions merge while their mean boundary probability is below"
    )
    beta: float = Field(
        default=0.5, gt=0, lt=1, description="multicut: boundary bias, above 0.5 more cuts, below more merges"
    )
    weight_by_size: bool = Field(default=True, description="multicut: weigh each cost by the size of its contact")
    min_size: int = Field(
        default=0, ge=0, description="a count of voxels; smaller objects are merged or removed (small_objects)"
    )
    max_size: int | None = Field(
        default=None, ge=1, description="a count of voxels; larger objects (after merging) are removed; None: no limit"
    )
    small_objects: Literal["merge", "remove"] = Field(
        default="merge",
        description="objects below min_size: merge into the neighbour they touch most (removed if none), or remove",
    )

    @field_validator("h", "min_distance", "sigma_seeds", mode="before")
    @classmethod
    def _length(cls, value: object, info: ValidationInfo) -> Length:
        if info.field_name == "h":
            return normal_length(value, minimum=0.0, inclusive=False)
        if info.field_name == "min_distance":
            voxels = _is_voxels(value)
            return normal_length(value, minimum=1.0 if voxels else 0.0, inclusive=voxels, whole=True)
        return normal_length(value, minimum=0.0, inclusive=True)

    def in_voxels(self, name: str, spacing: Sequence[float] | None) -> float:
        """The length option ``name`` in voxels of the finest axis of ``spacing`` (see
        :func:`bioseg.config.lengths.length_in_voxels`)."""
        return length_in_voxels(getattr(self, name), spacing, name)

    @model_validator(mode="after")
    def _consistent(self) -> InstanceConfig:
        if self.max_size is not None and self.max_size < self.min_size:
            raise ValueError(
                f"max_size ({self.max_size}) is below min_size ({self.min_size}), so no object could stay; "
                "raise max_size or lower min_size"
            )
        unused = self.unused_by(self.mode)
        if unused:
            raise ValueError(unused_message(unused, self.mode, self.foreground_method))
        return self

    def chosen(self) -> set[str]:
        """The options set to something else than their default. Configs that bioseg writes (init-config,
        run folders, ``--set`` on a resolved config) hold every key, so a key at its default is no choice."""
        fields = type(self).model_fields
        return {name for name in self.model_fields_set if getattr(self, name) != fields[name].default}

    def unused_by(self, mode: str) -> list[str]:
        """The options chosen here (see :meth:`chosen`) that ``mode`` would not read."""
        return unused_options(mode, self.foreground_method, self.chosen())
