"""Objects from a foreground map: components, or a distance watershed from the boundary mode's seeds."""

import numpy as np
import pytest
from helpers import assert_sequential, best_ious, two_touching_discs

from bioseg.config import InstanceConfig
from bioseg.errors import BiosegError
from bioseg.postprocess.instances import boundaries_to_instances, foreground_to_instances

# the seeds the foreground mode used before it read seed_method: peaks on the raw distance map
PEAKS = dict(seed_method="min_distance", sigma_seeds=0.0)


def test_foreground_components_vs_watershed_split():
    truth = two_touching_discs()
    prob = np.where(truth > 0, 0.9, 0.1).astype(np.float32)
    components = foreground_to_instances(prob, InstanceConfig(foreground_method="components"))
    assert components.max() == 1
    for params in (InstanceConfig(**PEAKS, min_distance=5), InstanceConfig()):  # peaks, and the h-maxima default
        timings: dict = {}
        split = foreground_to_instances(prob, params, timings=timings)
        assert split.max() == 2
        assert (best_ious(truth, split) > 0.9).all()
        assert_sequential(split)
        assert {"distance", "smooth", "seeds", "watershed", "size_filter"} <= set(timings)
    # min_size removes small specks
    prob[2:4, 2:4] = 0.9
    assert foreground_to_instances(prob, InstanceConfig(foreground_method="components")).max() == 2
    assert foreground_to_instances(prob, InstanceConfig(foreground_method="components", min_size=5)).max() == 1


def test_foreground_seeds_follow_h_and_min_distance():
    """Discs of radius 14 and 11, 22 voxels apart: the smaller peak rises about 4 voxels above the neck,
    so h (and the smoothing before seeding) or min_distance decide whether the pair splits."""
    yy, xx = np.indices((40, 64))
    discs = ((yy - 20) ** 2 + (xx - 18) ** 2 < 14**2) | ((yy - 20) ** 2 + (xx - 40) ** 2 < 11**2)
    prob = np.where(discs, 0.9, 0.1).astype(np.float32)

    def count(**options) -> int:
        return int(foreground_to_instances(prob, InstanceConfig(**options)).max())

    assert count() == 2 and count(h=3.0) == 2
    assert count(h=5.0) == 1  # the smaller peak is no seed of dynamic 5
    assert count(h=4.0) == 1 and count(h=4.0, sigma_seeds=0.0) == 2  # smoothing lowers the smaller peak
    assert count(seed_method="min_distance", min_distance=10) == 2
    assert count(seed_method="min_distance", min_distance=20) == 1  # the larger disc's peak is within 20


def test_foreground_size_filter_merges_removes_and_caps():
    truth = two_touching_discs()  # split in two by the watershed
    prob = np.where(truth > 0, 0.9, 0.1).astype(np.float32)
    prob[30:34, 55:59] = 0.9  # a speck of 16 voxels, alone
    sizes = np.bincount(foreground_to_instances(prob, InstanceConfig(**PEAKS, min_distance=5)).ravel())[1:]
    assert sorted(sizes)[0] == 16 and len(sizes) == 3
    big = int(sizes.max())
    merged = foreground_to_instances(prob, InstanceConfig(**PEAKS, min_distance=5, min_size=big + 1))
    assert merged.max() == 1 and (merged > 0).sum() == sizes.sum() - 16  # the discs merged, the speck went
    removed = foreground_to_instances(prob, InstanceConfig(**PEAKS, min_distance=5, min_size=big + 1,
                                                           small_objects="remove"))  # fmt: skip
    assert removed.max() == 0
    capped = foreground_to_instances(prob, InstanceConfig(**PEAKS, min_distance=5, max_size=big - 1))
    assert capped.max() == 2 and (capped == 0).sum() == (prob <= 0.5).sum() + big
    assert_sequential(capped)


def test_foreground_refuses_options_it_would_ignore():
    prob = np.where(two_touching_discs() > 0, 0.9, 0.1).astype(np.float32)
    with pytest.raises(BiosegError, match="merge_threshold is not read in mode foreground"):
        foreground_to_instances(prob, InstanceConfig(merge_threshold=0.3))
    with pytest.raises(BiosegError, match="h, min_distance are not read .* foreground_method components"):
        foreground_to_instances(prob, InstanceConfig(foreground_method="components", h=2.0, min_distance=4))
    with pytest.raises(BiosegError, match="foreground_method is not read in mode boundary"):
        boundaries_to_instances(prob, InstanceConfig(foreground_method="components"))
    # an option at its default changes nothing, whoever wrote it (configs that bioseg writes hold every key)
    assert foreground_to_instances(prob, InstanceConfig(merge_threshold=0.5)).max() == 2


def test_foreground_watershed_3d_anisotropic():
    disc = two_touching_discs((40, 61))
    truth = np.repeat(disc[None], 7, axis=0)
    truth[[0, -1]] = 0
    prob = np.where(truth > 0, 0.8, 0.2).astype(np.float32)
    for params in (InstanceConfig(**PEAKS, min_distance=5), InstanceConfig()):
        split = foreground_to_instances(prob, params, spacing=(4.0, 1.0, 1.0))
        assert split.max() == 2 and (best_ious(truth, split) > 0.9).all()
