"""Fewer, larger tiles for prediction: the plan, and a prediction made with it."""

import math

import numpy as np
import pytest
import torch

from bioseg import config
from bioseg.inference.predictor import Predictor
from bioseg.inference.tile_plan import TilePlan, plan_tiles, tile_plan
from bioseg.inference.tiling import tile_starts


def test_a_large_image_is_cut_into_fewer_tiles_of_no_more_voxels_than_a_tile_batch():
    plan = plan_tiles((2048, 2048), (256, 256), 0.25, 4, 16)
    assert math.prod(plan.patch) <= 4 * 256 * 256 and plan.batch_size == 1
    assert all(t % 16 == 0 and t >= 256 for t in plan.patch)
    fixed = TilePlan((256, 256), (0.25, 0.25), 4)
    assert fixed.computed((2048, 2048)) == pytest.approx(1.89, abs=0.01)  # 11 × 11 tiles of 256²
    assert plan.computed((2048, 2048)) < 1.25


def test_neighbouring_tiles_keep_the_training_patchs_margin():
    plan = plan_tiles((2048, 1500), (256, 256), 0.25, 4, 16)
    for size, tile, overlap in zip((2048, 1500), plan.patch, plan.overlap, strict=True):
        starts = tile_starts(size, tile, overlap)
        shared = [a + tile - b for a, b in zip(starts, starts[1:], strict=False)]
        assert starts[-1] + tile == size and min(shared) >= 64  # 256 - int(256 * 0.75)


def test_small_images_and_fixed_tiles_keep_the_training_patch():
    assert plan_tiles((100, 90), (256, 256), 0.25, 4, 16) == TilePlan((256, 256), (pytest.approx(63.5 / 256),) * 2, 4)
    whole = plan_tiles((512, 512), (256, 256), 0.25, 4, 16)
    assert whole.patch == (512, 512) and whole.computed((512, 512)) == 1.0  # one tile, each pixel once
    cfg = config.from_dict({"data": {"root": ".", "patch_size": [64, 64]}, "infer": {"patch_size": None}})
    assert cfg.infer.patch_size == [64, 64]  # None: the training patch, as before
    fixed = tile_plan(cfg, cfg.infer, (500, 500), 16)
    assert fixed == TilePlan((64, 64), (0.25, 0.25), 4)
    assert config.from_dict({"data": {"root": "."}}).infer.patch_size == "auto"


def test_anisotropic_volumes_split_their_long_axes():
    plan = plan_tiles((25, 1024, 1024), (32, 96, 96), 0.25, 2, (4, 16, 16))
    assert plan.patch[0] == 32 and math.prod(plan.patch) <= 2 * 32 * 96 * 96
    assert plan.computed((25, 1024, 1024)) < TilePlan((32, 96, 96), (0.25,) * 3, 2).computed((25, 1024, 1024))


class Recorder(torch.nn.Module):
    """A per-pixel 'network' (logits 4 (x - 0.5)): its output is the same however the image is tiled."""

    size_divisor = 16

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.shapes.append(tuple(x.shape))
        return {"mask": 4 * (x - 0.5)}


def test_auto_tiles_predict_what_fixed_tiles_do_in_fewer_forward_passes():
    image = np.random.default_rng(0).random((1, 700, 530)).astype(np.float32)
    raw = {"data": {"root": ".", "patch_size": [128, 128], "normalization": {"mode": "none"}},
           "infer": {"precision": "fp32"}}  # fmt: skip
    results = {}
    for patch in ("auto", [128, 128]):
        predictor = Predictor(Recorder(), config.from_dict(raw), patch_size=patch)
        probabilities = predictor.predict(image).probabilities["mask"]
        results[str(patch)] = (probabilities, predictor.members[0].net.shapes)  # the copy that runs the tiles
    (auto, auto_calls), (fixed, fixed_calls) = results["auto"], results["[128, 128]"]
    np.testing.assert_allclose(auto, fixed, atol=1e-6)
    assert len(auto_calls) < len(fixed_calls) and all(math.prod(s[2:]) <= 4 * 128 * 128 for s in auto_calls)
    assert sum(math.prod(s) for s in auto_calls) < 0.75 * sum(math.prod(s) for s in fixed_calls)
