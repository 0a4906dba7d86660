"""The random fields every demo generator shares: smooth noise and fine texture, in 2D and 3D."""

import numpy as np
import pytest

from bioseg.demos.noise import fine_texture, smooth_noise


@pytest.mark.parametrize("shape", [(64, 80), (12, 40, 48), (50,)])
def test_smooth_noise_spans_minus_one_to_one_and_is_reproducible(shape):
    field = smooth_noise(np.random.default_rng(3), shape, 3)
    assert field.shape == shape and field.dtype == np.float32
    assert np.abs(field).max() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(field, smooth_noise(np.random.default_rng(3), shape, 3))
    assert not np.array_equal(field, smooth_noise(np.random.default_rng(4), shape, 3))


def test_smooth_noise_is_smooth_and_cells_set_its_scale():
    rng = np.random.default_rng(0)
    coarse = [np.abs(np.diff(smooth_noise(rng, (128, 128), 2), axis=0)).mean() for _ in range(20)]
    fine = [np.abs(np.diff(smooth_noise(rng, (128, 128), 12), axis=0)).mean() for _ in range(20)]
    assert max(np.max(coarse), np.max(fine)) < 0.1  # no jumps between neighbouring pixels
    assert np.mean(fine) > 2 * np.mean(coarse)  # more cells, more bumps


def test_smooth_noise_takes_one_count_per_axis_and_draws_a_known_number_of_normals():
    rng, twin = np.random.default_rng(1), np.random.default_rng(1)
    field = smooth_noise(rng, (8, 32, 32), (1, 4, 2))
    assert field.shape == (8, 32, 32)
    twin.standard_normal((2, 5, 3))  # the coarse grid: cells + 1 nodes per axis
    assert rng.random() == twin.random()
    with pytest.raises(ValueError, match="one per axis"):
        smooth_noise(rng, (8, 8), (2, 2, 2))
    with pytest.raises(ValueError, match=">= 1"):
        smooth_noise(rng, (8, 8), 0)


def test_fine_texture_has_unit_spread_in_the_dtype_asked_for():
    tex = fine_texture(np.random.default_rng(0), (64, 64), 1.5)
    assert tex.dtype == np.float64 and tex.std() == pytest.approx(1.0)
    volume = fine_texture(np.random.default_rng(0), (8, 32, 32), (0.5, 1.0, 1.0), np.float32)
    assert volume.dtype == np.float32 and volume.std() == pytest.approx(1.0, rel=1e-4)
