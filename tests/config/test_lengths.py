"""Lengths that say their unit: numbers are voxels of the finest axis, "0.5 um" is micrometres."""

import pytest

from bioseg.config import InstanceConfig
from bioseg.config.lengths import length_in_voxels, parse_length
from bioseg.errors import BiosegError


@pytest.mark.parametrize(
    "value, expected",
    [(2, (2.0, "voxels")), (0.5, (0.5, "voxels")), ("3", (3.0, "voxels")), ("2 voxels", (2.0, "voxels")),
     ("0.5 um", (0.5, "um")), ("0.5µm", (0.5, "um")), ("1.5 μm", (1.5, "um")), (" 2e-1  microns ", (0.2, "um"))],
)  # fmt: skip
def test_a_length_is_a_number_of_voxels_or_says_its_unit(value, expected):
    assert parse_length(value) == expected


@pytest.mark.parametrize("value", ["2 nm", "um", "fast", True, None, float("nan")])
def test_what_is_no_length_is_refused_with_the_forms_that_are(value):
    with pytest.raises(ValueError, match="a number of voxels .* or micrometres such as '0.5 um'"):
        parse_length(value)


def test_the_config_stores_numbers_for_voxels_and_keeps_the_unit_of_micrometres():
    inst = InstanceConfig(h="2 voxels", min_distance="4", sigma_seeds="0.5 µm")
    assert (inst.h, inst.min_distance, inst.sigma_seeds) == (2.0, 4, "0.5 um")
    assert InstanceConfig(h="0.25um").model_dump()["h"] == "0.25 um"
    assert InstanceConfig.model_validate(InstanceConfig(h="0.25 um").model_dump()).h == "0.25 um"
    for bad in ({"h": 0}, {"h": "-1 um"}, {"min_distance": 0}, {"min_distance": 2.5}, {"sigma_seeds": -1}):
        with pytest.raises(ValueError):
            InstanceConfig(**bad)
    assert InstanceConfig(min_distance="1.5 um").min_distance == "1.5 um"


def test_micrometres_are_divided_by_the_finest_voxel_size_and_need_one():
    assert length_in_voxels("1 um", (2.0, 0.25, 0.25), "h") == 4.0
    assert length_in_voxels(3, (2.0, 0.25, 0.25), "h") == 3.0
    assert length_in_voxels(3, None, "h") == 3.0  # the same number of voxels with or without a voxel size
    with pytest.raises(BiosegError, match="h is '1 um', a length in micrometres, but no voxel size is known"):
        length_in_voxels("1 um", None, "h")
