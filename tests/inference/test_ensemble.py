"""Ensembles: the mean of members that read images alike; anything else refused in one line."""

import numpy as np
import pytest
import torch
from helpers import INSTANCE_HEADS, PointwiseNet, two_heads

from bioseg import config
from bioseg.errors import BiosegError
from bioseg.inference.ensemble import check_split, member_paths
from bioseg.inference.instances import predict_instances
from bioseg.inference.predictor import Predictor
from bioseg.nn import create_model
from bioseg.nn.bundle import ModelBundle, build_network, save_model


def small_cfg(**data) -> config.Experiment:
    return config.from_dict({
        "name": "small",
        "model": {"widths": [4, 8]},
        "data": {"root": ".", "patch_size": [16, 16], **data},
        "infer": {"precision": "fp32", "patch_size": [16, 16]},
    })  # fmt: skip


def save_run(folder, cfg, seed=0):
    torch.manual_seed(seed)
    return save_model(build_network(cfg), cfg, folder).parent


@pytest.mark.parametrize("tta", [False, True])
def test_ensemble_of_two_identical_models_equals_one(tta):
    net = PointwiseNet(2, {"mask": 1, "kind": 3})
    image = np.random.default_rng(2).normal(size=(2, 11, 12)).astype(np.float32)
    one = Predictor(net, two_heads(2, tta=tta)).predict_prepared(image)
    pair = Predictor(net, two_heads(2, tta=tta))
    pair.add_member(PointwiseNet(2, {"mask": 1, "kind": 3}), two_heads(2))
    assert pair.n_views == (16 if tta else 2)
    two = pair.predict_prepared(image)
    for head in ("mask", "kind"):
        np.testing.assert_allclose(two.probabilities[head], one.probabilities[head], atol=1e-6)
        np.testing.assert_array_equal(two.labels[head], one.labels[head])
        assert two.mutual_information[head].max() < 1e-5


def test_ensemble_is_the_mean_of_its_members():
    a, b = PointwiseNet(2, {"mask": 1, "kind": 3}, seed=1), PointwiseNet(2, {"mask": 1, "kind": 3}, seed=2)
    image = np.random.default_rng(3).normal(size=(2, 9, 10)).astype(np.float32)
    pa = Predictor(a, two_heads(2)).predict_prepared(image)
    pb = Predictor(b, two_heads(2)).predict_prepared(image)
    pair = Predictor(a, two_heads(2))
    pair.add_member(b, two_heads(2))
    both = pair.predict_prepared(image)
    for head in ("mask", "kind"):
        mean = (pa.probabilities[head] + pb.probabilities[head]) / 2
        np.testing.assert_allclose(both.probabilities[head], mean, atol=1e-6)


@pytest.mark.parametrize(
    "change, what",
    [
        ({"heads": {"mask": {"type": "binary"}, "kind": {"type": "multiclass", "classes": 4}}}, "classes"),
        ({"heads": {"mask": {"type": "binary"}}}, "heads"),
        ({"data": {"root": ".", "patch_size": [8, 8], "in_channels": 2, "normalization": {"mode": "none"}}},
         "normalisation"),
    ],
)
def test_members_that_differ_are_refused_with_what_differs(change, what):
    raw = two_heads(2).model_dump(mode="json")
    other = config.from_dict({**raw, **change})
    predictor = Predictor(PointwiseNet(2, {"mask": 1, "kind": 3}), two_heads(2))
    net = PointwiseNet(2, {h: v.out_channels for h, v in other.heads.items()})
    with pytest.raises(BiosegError, match=f"differ in {what}:"):
        predictor.add_member(net, other, "other run")


def test_from_runs_reads_an_experiment_folder_as_its_folds(tmp_path):
    cfg = small_cfg()
    for k in range(3):
        save_run(tmp_path / "runs" / "small" / f"fold_{k}", cfg, seed=k)
    experiment = tmp_path / "runs" / "small"
    assert [p.name for p in member_paths([experiment])] == ["fold_0", "fold_1", "fold_2"]
    with pytest.raises(BiosegError, match="3 folds"):  # a single-model command still asks for one
        ModelBundle.load(experiment)
    predictor = Predictor.from_runs([experiment], tta=True)
    assert len(predictor.members) == 3 and predictor.n_views == 24
    result = predictor.predict(np.random.default_rng(0).random((20, 22), dtype=np.float32))
    assert result.probabilities["mask"].shape == (1, 20, 22)
    assert result.uncertainty["mask"].shape == result.mutual_information["mask"].shape == (20, 22)
    with pytest.raises(BiosegError, match="named twice"):
        member_paths([experiment, experiment / "fold_1"])


def test_an_ensemble_of_a_run_and_its_copy_finds_the_objects_of_the_run(tmp_path):
    """Through the files, both heads and post.instances: the mean of one model with itself is that model."""
    import shutil

    from scipy.ndimage import gaussian_filter

    raw = small_cfg().model_dump(mode="json")
    instances = {"mode": "boundary", "agglomeration": "none", "h": 0.2}
    cfg = config.from_dict({**raw, "heads": INSTANCE_HEADS, "post": {"instances": instances}})
    run = save_run(tmp_path / "a", cfg, seed=3)
    shutil.copytree(run, tmp_path / "b")
    image = gaussian_filter(np.random.default_rng(4).random((40, 44), dtype=np.float32), 3)
    one = Predictor.from_runs([run]).predict(image)
    two = Predictor.from_runs([run, tmp_path / "b"]).predict(image)
    for head in ("foreground", "boundaries"):
        np.testing.assert_array_equal(two.probabilities[head], one.probabilities[head])
    # an untrained network's boundary map is faint: its median makes a threshold that finds objects
    cfg.post.instances.threshold = float(np.median(one.probabilities["boundaries"]))
    objects = predict_instances(one.probabilities, cfg)
    assert objects.max() > 1
    np.testing.assert_array_equal(predict_instances(two.probabilities, cfg), objects)


def test_an_ensemble_of_folds_is_scored_on_the_test_split_only(tmp_path):
    cfg0, cfg1 = small_cfg(fold=0), small_cfg(fold=1)
    bundles = [ModelBundle.load(save_run(tmp_path / f"fold_{k}", c)) for k, c in enumerate((cfg0, cfg1))]
    check_split(bundles, "test")
    with pytest.raises(BiosegError, match="--split test"):
        check_split(bundles, "val")


def test_members_of_other_architectures_combine(tmp_path):
    a = save_run(tmp_path / "a", small_cfg())
    other = small_cfg()
    other.model.widths = [4, 8, 8]
    b = save_run(tmp_path / "b", other)
    predictor = Predictor.from_runs([a, b])
    assert predictor.predict(np.zeros((13, 17), np.float32)).labels["mask"].shape == (13, 17)
    unet = create_model("unet", spatial_dims=2, in_channels=1, heads={"mask": 1}, widths=[4, 8, 8])
    assert predictor._size_divisor == tuple(unet.size_divisor)
