"""Reading raw mask values: palettes, files on other scales, anti-aliased binary masks, the threshold."""

import numpy as np
import pytest
from helpers import anti_aliased_disc, two_touching_discs

from bioseg.data.mask_values import (
    anti_aliased,
    full_scale,
    is_palette,
    mask_advice,
    threshold_mask,
    unlike_siblings,
    value_shares,
)
from bioseg.data.preprocess import value_counts


def test_value_shares_are_percent_of_pixels():
    assert value_shares({0: 3, 255: 1}) == {0: 75.0, 255: 25.0}
    assert value_shares({}) == {}


@pytest.mark.parametrize(
    "values, palette",
    [
        ([0, 32, 64, 96, 128, 160, 192, 224, 255], True),
        ([0, 85, 170, 255], True),
        ([0, 127, 255], True),
        ([0, 1, 2], False),  # class indices
        ([0, 255], False),  # binary
        ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], False),  # object ids
        ([0, 10, 200], False),
    ],
)
def test_palettes_are_evenly_spaced_grey_levels(values, palette):
    assert is_palette(values) is palette


def test_full_scale_and_threshold_mix_01_and_0255_files():
    assert [full_scale(v) for v in (0, 1, 2, 255, 256, 4095, 70000)] == [1, 1, 255, 255, 65535, 65535, 70000]
    np.testing.assert_array_equal(threshold_mask(np.array([[0, 1]]), 0.5), [[0, 1]])
    np.testing.assert_array_equal(threshold_mask(np.array([[0, 100, 128, 255]]), 0.5), [[0, 0, 1, 1]])
    np.testing.assert_array_equal(threshold_mask(np.zeros((2, 2), np.uint8), 0.5), np.zeros((2, 2)))
    np.testing.assert_array_equal(threshold_mask(np.array([[0, 3]]), 0.5), [[0, 0]])  # faint noise, not objects


def test_files_on_another_scale_form_their_own_group():
    groups = unlike_siblings({"a": {0, 1}, "b": {0, 1}, "c": {0, 255}, "d": {0}})
    assert groups == [["a", "b"], ["c"]]
    assert len(unlike_siblings({"a": {0, 1}, "b": {0, 2}, "c": {0, 1, 2}})) == 1  # classes, not scales
    assert len(unlike_siblings({"a": {0, 1, 2, 3}, "b": {0, 1, 2, 7}})) == 1  # object ids


def test_anti_aliased_disc_is_found_and_objects_are_not():
    disc = anti_aliased_disc()
    greys = np.unique(disc)
    assert greys[0] == 0 and greys[-1] == 255 and len(greys) > 5
    found = anti_aliased(disc, value_counts(disc))
    assert found is not None and (found.low, found.high) == (0, 255) and found.threshold == pytest.approx(0.5)
    ids = two_touching_discs()
    ids[30:, 50:] = 3
    assert anti_aliased(ids, value_counts(ids)) is None  # object ids fill whole regions
    binary = (disc > 127).astype(np.uint8)
    assert anti_aliased(binary, value_counts(binary)) is None


@pytest.mark.parametrize("dims", [2, 3])
def test_a_palette_of_regions_is_not_anti_aliased(dims):
    shape = (33, 34) if dims == 2 else (9, 33, 34)
    bands = (np.indices(shape)[-1] // 5 * 32).clip(0, 255).astype(np.uint8)
    assert anti_aliased(bands, value_counts(bands)) is None


def test_advice_for_anti_aliased_masks_beside_01_files():
    disc = anti_aliased_disc()
    counts = {"a": value_counts(disc), "b": {0: 900, 1: 222}, "c": {0: 1122}}
    aliased = {"a": anti_aliased(disc, counts["a"])}
    advice = mask_advice(counts, {"a": "masks/a.png", "b": "masks/b.png"}, aliased)
    assert advice.mask_threshold == pytest.approx(0.5) and advice.mask_values is None
    assert advice.classes == ["background", "foreground"]
    assert "anti-aliased" in advice.warnings[0] and "masks/a.png" in advice.warnings[0]


def test_advice_for_a_palette_names_every_value_and_no_background():
    values = [0, 32, 64, 96, 128, 160, 192, 224, 255]
    advice = mask_advice({"a": {v: 10 for v in values}}, {"a": "masks/a.png"}, {})
    assert advice.mask_values == {v: i for i, v in enumerate(values)}
    assert advice.classes == [f"value_{v}" for v in values] and "background" not in advice.classes
    assert "palette" in advice.warnings[0] and advice.mask_threshold is None


def test_advice_for_files_on_two_scales_maps_every_value():
    counts = {"a": {0: 5, 1: 5}, "b": {0: 5, 1: 5}, "c": {0: 5, 255: 5}}
    advice = mask_advice(counts, {k: f"masks/{k}.png" for k in counts}, {})
    assert advice.mask_values == {0: 0, 1: 1, 255: 2} and advice.classes == ["value_0", "value_1", "value_255"]
    assert "masks/c.png" in advice.warnings[0] and "disagree" in advice.warnings[0]


def test_no_advice_for_plain_masks():
    advice = mask_advice({"a": {0: 5, 1: 5}, "b": {0: 5, 2: 5}}, {}, {})
    assert advice.warnings == [] and advice.mask_values is None and advice.classes is None
