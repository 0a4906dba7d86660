"""The seed lengths of post.instances keep their unit whatever voxel size is known."""

import numpy as np
import pytest

from bioseg.config import InstanceConfig
from bioseg.errors import BiosegError
from bioseg.postprocess import watershed as ws
from bioseg.postprocess.instances import _Clock, _geometry, _seeds, boundaries_to_instances, foreground_to_instances


def blobs_3d(seed: int = 0) -> np.ndarray:
    """Touching balls of several sizes in a (9, 40, 40) stack: a foreground probability map."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices((9, 40, 40))
    inside = np.zeros((9, 40, 40), bool)
    for _ in range(7):
        z, y, x = rng.integers(2, 7), rng.integers(6, 34), rng.integers(6, 34)
        r = rng.uniform(4, 9)
        inside |= ((zz - z) * 2) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 < r**2
    return np.where(inside, 0.9, 0.1).astype(np.float32)


def seeds(prob: np.ndarray, params: InstanceConfig, spacing) -> np.ndarray:
    grid = _geometry(spacing, prob.ndim)
    dist = ws.distance_transform(prob > params.threshold, grid.spacing)
    return _seeds(dist, params, grid, _Clock(None))


@pytest.mark.parametrize("method", [{}, {"seed_method": "min_distance"}])
def test_a_voxel_size_leaves_lengths_in_voxels_as_many_voxels(method):
    """h = 1 is one in-plane voxel with no voxel size and with a voxel size 8 times a unit one: adding
    data.voxel_size to a config changes no seed (before, h became 1 µm = 8 voxels here)."""
    prob = blobs_3d()
    params = InstanceConfig(mode="foreground", h=1.0, **method)
    none = seeds(prob, params, None)
    assert none.max() > 1
    np.testing.assert_array_equal(seeds(prob, params, (16.0, 8.0, 8.0)), seeds(prob, params, (2.0, 1.0, 1.0)))
    isotropic = seeds(prob, params, (8.0, 8.0, 8.0))
    np.testing.assert_array_equal(isotropic, none)
    objects = foreground_to_instances(prob, params, spacing=(8.0, 8.0, 8.0))
    np.testing.assert_array_equal(objects, foreground_to_instances(prob, params))


@pytest.mark.parametrize("spacing", [(2.0, 0.5, 0.5), (1.0, 0.25, 0.25)])
def test_micrometres_are_that_many_finest_voxels(spacing):
    prob = blobs_3d(1)
    finest = min(spacing)
    for key, um in (("h", 0.5), ("sigma_seeds", 0.25), ("min_distance", 1.0)):
        voxels = um / finest if key != "min_distance" else round(um / finest)
        a = InstanceConfig(mode="foreground", **{key: f"{um} um"}, **_method(key))
        b = InstanceConfig(mode="foreground", **{key: voxels}, **_method(key))
        np.testing.assert_array_equal(seeds(prob, a, spacing), seeds(prob, b, spacing))
    boundary = np.where(prob > 0.5, 0.1, 0.9).astype(np.float32)
    np.testing.assert_array_equal(
        boundaries_to_instances(boundary, InstanceConfig(mode="boundary", h="0.5 um"), spacing=spacing),
        boundaries_to_instances(boundary, InstanceConfig(mode="boundary", h=0.5 / finest), spacing=spacing),
    )


def _method(key: str) -> dict:
    return {"seed_method": "min_distance"} if key == "min_distance" else {}


def test_micrometres_without_a_voxel_size_are_refused_with_the_fix():
    prob = blobs_3d()
    with pytest.raises(BiosegError, match=r"post.instances.h is '1 um'.*set data.voxel_size .*or give h in voxels"):
        foreground_to_instances(prob, InstanceConfig(mode="foreground", h="1 um"))
    # a length the chosen seeds do not read needs no voxel size
    params = InstanceConfig(mode="foreground", seed_method="min_distance", h="1 um")
    assert foreground_to_instances(prob, params).max() > 1
