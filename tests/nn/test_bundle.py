"""The model folder: a network built from its description, saved, read back, migrated, refused."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bioseg import config
from bioseg.config import InstanceConfig
from bioseg.errors import BiosegError
from bioseg.inference.predictor import Predictor
from bioseg.nn.bundle import (
    FORMAT_VERSION,
    META,
    MIGRATIONS,
    ModelBundle,
    build_network,
    network_description,
    read_meta,
    save_model,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "model_format_1"


def _cfg(tmp_path, **model):
    data = {"root": str(tmp_path), "patch_size": [32, 32]}
    return config.from_dict({"data": data, "model": {"widths": [4, 8], **model}})


def test_a_model_written_in_format_1_loads_and_predicts_the_labels_it_predicted_then(monkeypatch):
    """The fixture was written (and its labels predicted) by the release before the network description,
    whose tiles were not yet aligned to the network's pooling grid: placed as then, they predict as then."""
    from bioseg.inference import tiling

    unaligned = tiling.tile_starts
    monkeypatch.setattr(tiling, "tile_starts", lambda size, patch, overlap, align=1: unaligned(size, patch, overlap))
    assert json.loads((FIXTURE / "model" / META).read_text())["format_version"] == 1
    predictor = Predictor.from_run(FIXTURE, precision="fp32")
    prediction = predictor.predict(np.load(FIXTURE / "image.npy"))
    expected = np.load(FIXTURE / "expected_labels.npy")
    assert 0.1 < expected.mean() < 0.9  # a real segmentation, not an empty or full mask
    assert (prediction.labels["mask"] == expected).mean() > 0.999
    np.testing.assert_allclose(prediction.probabilities["mask"], np.load(FIXTURE / "expected_probabilities.npy"),
                               atol=1e-4)  # fmt: skip


def test_format_1_is_migrated_to_the_current_format_with_a_network_description():
    meta = read_meta(FIXTURE / "model")
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["network"] == {"name": "unet", "spatial_dims": 2, "in_channels": 1, "heads": {"mask": 1},
                               "options": meta["network"]["options"]}  # fmt: skip
    assert meta["network"]["options"]["widths"] == [4, 8]


def test_foreground_objects_of_a_format_1_model_keep_the_options_they_were_predicted_with(tmp_path):
    shutil.copytree(FIXTURE / "model", tmp_path / "model")
    meta = json.loads((tmp_path / "model" / META).read_text())
    meta["experiment"]["post"]["instances"].update(mode="foreground", merge_threshold=0.3, max_size=500)
    (tmp_path / "model" / META).write_text(json.dumps(meta))
    inst = ModelBundle.load(tmp_path).cfg.post.instances
    assert (inst.mode, inst.foreground_head) == ("foreground", "mask")
    # version 1 seeded from peaks min_distance apart, unsmoothed, removed small objects and read nothing else
    seeds = (inst.seed_method, inst.sigma_seeds, inst.small_objects, inst.max_size)
    assert seeds == ("min_distance", 0.0, "remove", None)
    assert inst.merge_threshold == InstanceConfig().merge_threshold


@pytest.mark.parametrize("voxel_size, expected", [([0.5, 0.25], "0.75 um"), (None, 0.75)])
def test_format_2_h_keeps_the_unit_it_was_read_in(tmp_path, voxel_size, expected):
    """Format 2 read h in units of the voxel size: micrometres where the experiment has one (every image
    had it), voxels without (2D images never had one)."""
    shutil.copytree(FIXTURE / "model", tmp_path / "model")
    meta = MIGRATIONS[1](json.loads((tmp_path / "model" / META).read_text()))
    meta["format_version"] = 2
    meta["experiment"]["data"]["voxel_size"] = voxel_size
    meta["experiment"]["post"]["instances"].update(mode="foreground", h=0.75, min_distance=4, sigma_seeds=0.5)
    meta["post"] = meta["experiment"]["post"]
    (tmp_path / "model" / META).write_text(json.dumps(meta))
    migrated = read_meta(tmp_path / "model")
    assert migrated["format_version"] == FORMAT_VERSION
    assert migrated["post"] == migrated["experiment"]["post"]
    inst = ModelBundle.load(tmp_path).cfg.post.instances
    assert (inst.h, inst.min_distance, inst.sigma_seeds) == (expected, 4, 0.5)  # those two were voxels already


def test_save_then_load_gives_the_same_network_and_experiment(tmp_path):
    cfg = _cfg(tmp_path, norm="group")
    net = build_network(cfg)
    torch.nn.init.normal_(next(net.parameters()))
    model_dir = save_model(net, cfg, tmp_path / "run")
    bundle = ModelBundle.load(tmp_path / "run")
    assert bundle.model_dir == model_dir and bundle.run_dir == tmp_path / "run"
    assert config.to_dict(bundle.cfg) == config.to_dict(cfg)
    for (k, a), (_, b) in zip(net.state_dict().items(), bundle.net.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert not bundle.net.training


def test_a_model_from_a_later_format_is_refused_in_one_line(tmp_path):
    shutil.copytree(FIXTURE / "model", tmp_path / "model")
    meta = json.loads((tmp_path / "model" / META).read_text())
    meta.update(format_version=FORMAT_VERSION + 1, bioseg_version="9.0")
    (tmp_path / "model" / META).write_text(json.dumps(meta))
    with pytest.raises(BiosegError, match=rf"bioseg 9.0 in model format {FORMAT_VERSION + 1}.*upgrade bioseg") as err:
        ModelBundle.load(tmp_path)
    assert "\n" not in str(err.value)


def test_a_file_that_is_not_a_model_description_is_refused(tmp_path):
    shutil.copytree(FIXTURE / "model", tmp_path / "model")
    (tmp_path / "model" / META).write_text(json.dumps({"format": "other"}))
    with pytest.raises(BiosegError, match="not a bioseg model description"):
        ModelBundle.load(tmp_path)


def test_rewriting_the_experiment_keeps_the_summary_in_step(tmp_path):
    cfg = _cfg(tmp_path)
    save_model(build_network(cfg), cfg, tmp_path)
    bundle = ModelBundle.load(tmp_path)
    tuned = bundle.cfg.model_copy(deep=True)
    tuned.post.min_size = 7
    bundle.update_experiment(tuned)
    meta = json.loads((tmp_path / "model" / META).read_text())
    assert meta["experiment"]["post"]["min_size"] == 7 and meta["post"]["min_size"] == 7
    other = tuned.model_copy(deep=True)
    other.model.widths = [4, 8, 16]
    with pytest.raises(BiosegError, match="another network"):
        bundle.update_experiment(other)


def test_an_option_the_model_does_not_take_is_an_error(tmp_path):
    with pytest.raises(BiosegError, match="does not use model.depth"):
        network_description(_cfg(tmp_path, depth=34))


def test_prediction_imports_no_training_code():
    code = (
        "import sys, numpy as np; from bioseg.inference.predictor import Predictor; "
        f"p = Predictor.from_run({str(FIXTURE)!r}, precision='fp32'); "  # fp32: no precision measurement
        f"p.predict(np.load({str(FIXTURE / 'image.npy')!r})); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'lightning' or m.startswith("
        "('bioseg.engine', 'bioseg.losses', 'bioseg.data.augment', 'bioseg.workflows'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
