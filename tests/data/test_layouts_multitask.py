"""Several heads on one network: the seed's folder layout, OME-Zarr stores, missing masks, head freezing."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import bioseg
from bioseg.engine.head_freezing import HeadFreezing, set_frozen
from bioseg.engine.module import SegmentationModule
from bioseg.errors import BiosegError

WING_HEADS = {
    "wing": {"type": "binary", "loss": [{"name": "bce", "pos_weight": 2}, {"name": "dice"}]},
    "veins": {"type": "binary", "loss": [{"name": "bce"}, {"name": "dice"}, {"name": "cldice", "weight": 0.5}]},
    "spots": {"type": "binary", "loss": [{"name": "focal", "alpha": 0.85, "gamma": 2}, {"name": "dice"}]},
    "domains": {"type": "multiclass", "classes": 5, "loss": [{"name": "ce"}]},
}
TINY_MT = [
    "train.epochs=2",
    "model.widths=[4,8]",
    "data.batch_size=2",
    "data.patches_per_epoch=4",
    "data.patch_size=[64,64]",
    "infer.patch_size=[64,64]",
    "train.snapshots=1",
]


def wing_config(root: Path, out: Path, **data) -> dict:
    return {
        "name": "wings",
        "output_dir": str(out),
        "data": {"root": str(root), "in_channels": 3, "resize": 64, **data},
        "heads": WING_HEADS,
    }


@pytest.fixture(scope="module")
def wings(tmp_path_factory) -> Path:
    from bioseg.demos.wings import write_wing_dataset

    root = write_wing_dataset(
        tmp_path_factory.mktemp("wings") / "data", 6, size=(72, 96), seed=0, split=(0.5, 0.25, 0.25)
    )
    # one training sample lacks its spots mask: it must still train the other heads
    missing = sorted((root / "train" / "masks" / "spots").iterdir())[0]
    missing.unlink()
    return root


def test_multitask_folders_train_every_head_and_map_back_to_size(wings, tmp_path):
    from bioseg.data.layouts import discover

    index = discover(wings)
    assert index.layout == "multitask" and sorted(index.samples[0].masks) in (
        ["domains", "spots", "veins", "wing"],
        ["domains", "veins", "wing"],
    )
    result = bioseg.train(wing_config(wings, tmp_path), overrides=TINY_MT, progress=False)
    last = result.history[-1]
    for head in WING_HEADS:
        assert f"val/{head}/dice_mean" in last and f"train/loss/{head}/total" in last
    assert "val/veins/cldice" in last
    assert (result.run_dir / "charts" / "training.gif").is_file()
    import imageio.v3 as iio

    assert iio.imread(result.run_dir / "charts" / "training.gif", index=None).shape[0] == 2  # a frame per epoch
    predictor = bioseg.Predictor.from_run(result.run_dir)
    image = np.random.default_rng(0).integers(0, 255, (3, 72, 96), dtype=np.uint8)
    prediction = predictor.predict(image)
    assert prediction.labels["wing"].shape == (72, 96)  # back at the image's own size, not the 64² square
    assert prediction.probabilities["domains"].shape == (5, 72, 96)


def test_a_missing_head_mask_gives_zero_weight(wings):
    from bioseg import config
    from bioseg.data.dataset import load_sample
    from bioseg.data.layouts import discover

    cfg = config.from_dict(wing_config(wings, Path("/tmp")))
    sample = next(s for s in discover(wings).samples if "spots" not in s.masks)
    loaded = load_sample(sample, cfg)
    assert not loaded.weights["spots"].any() and loaded.targets["spots"].shape == (64, 64)
    assert "wing" not in loaded.weights  # heads with a mask need no weight map


def test_frozen_head_does_not_change_while_others_do(wings, tmp_path):
    from bioseg import config

    cfg = config.from_dict(wing_config(wings, tmp_path), overrides=TINY_MT)
    module = SegmentationModule(config.to_dict(cfg))
    module.frozen_heads.add("wing")
    set_frozen(module.net, "wing", True)
    optimiser = torch.optim.AdamW(module.parameters(), lr=0.1, weight_decay=0.1)
    before = {k: v.clone() for k, v in module.net.state_dict().items()}
    x = torch.randn(2, 3, 64, 64)
    batch = {"image": x}
    for head, h in cfg.heads.items():
        batch[f"target/{head}"] = torch.randint(0, h.classes, (2, 1, 64, 64), dtype=torch.uint8)
    from bioseg.engine.module import batch_targets

    targets, weights = batch_targets(batch, cfg.heads)
    targets.pop("wing")  # what training_step does for a frozen head
    loss, _ = module.loss(module.net(x), targets, weights)
    loss.backward()
    optimiser.step()
    after = module.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in after if k.startswith("head_convs.wing."))
    assert not torch.equal(before["head_convs.veins.weight"], after["head_convs.veins.weight"])


def test_head_freezing_hysteresis():
    class Module:
        frozen_heads: set = set()

        def __init__(self):
            self.frozen_heads = set()
            self.cfg = type("C", (), {"heads": {"a": None, "b": None}})()
            self.net = torch.nn.Module()

    class Trainer:
        sanity_checking = False
        current_epoch = 0
        callback_metrics: dict = {}

    callback, module, trainer = HeadFreezing("dice_mean", 0.9, 0.8), Module(), Trainer()
    for epoch, (a, b) in enumerate([(0.85, 0.3), (0.95, 0.4), (0.85, 0.5), (0.79, 0.6), (0.96, 0.97)]):
        trainer.current_epoch = epoch
        trainer.callback_metrics = {"val/a/dice_mean": torch.tensor(a), "val/b/dice_mean": torch.tensor(b)}
        callback.on_validation_end(trainer, module)
    events = [(e["epoch"], e["head"], e["frozen"]) for e in callback.events]
    # a freezes at 0.95, stays frozen at 0.85 (above 0.8), unfreezes at 0.79, freezes again at 0.96;
    # b would pass 0.9 at the last epoch but one head always keeps training
    assert events == [(1, "a", True), (3, "a", False), (4, "a", True)]


def test_ome_zarr_round_trip(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    from bioseg.data.layouts import discover
    from bioseg.data.splits import make_splits
    from bioseg.demos.wings import make_wing
    from bioseg.io import write_ome_zarr

    heads = {"wing": {"type": "binary"}, "spots": {"type": "binary"}}
    for i in range(5):
        image, masks = make_wing((64, 80), seed=i)
        labels = {h: masks[h].astype(np.uint8) for h in heads}
        write_ome_zarr(tmp_path / "stores" / f"w{i}.zarr", np.moveaxis(image, -1, 0), axes="CYX", labels=labels)
    index = discover(tmp_path / "stores")
    assert index.layout == "zarr" and set(index.samples[0].masks) == {"wing", "spots"}
    make_splits(index, folds=1, test_split=0.2, val_split=0.25)
    cfg = {
        "name": "z",
        "output_dir": str(tmp_path / "runs"),
        "heads": heads,
        "data": {"root": str(tmp_path / "stores"), "in_channels": 3},
    }
    result = bioseg.train(
        cfg, overrides=[*TINY_MT, "data.patch_size=[32,32]", "infer.patch_size=[64,64]"], progress=False
    )
    store = tmp_path / "stores" / "w0.zarr"
    bioseg.predict(result.run_dir, [store], tmp_path / "out", progress=False)
    nodes = list(Reader(parse_url(str(store)))())
    names = json.loads((store / "labels" / "zarr.json").read_text())["attributes"]["ome"]["labels"]
    assert set(names) == {"wing", "spots", "wing_prediction", "spots_prediction"}
    shapes = [n.data[0].shape for n in nodes if n.data]
    assert shapes.count((64, 80)) == 4  # two true and two predicted label images, at the image's size


def test_evaluate_scores_every_head_of_a_multitask_run(wings, tmp_path):
    result = bioseg.train(wing_config(wings, tmp_path), overrides=[*TINY_MT, "train.epochs=1"], progress=False)
    evaluation = bioseg.evaluate(result.run_dir, split="test", progress=False)
    assert set(evaluation.heads) == set(WING_HEADS)
    metrics = json.loads((evaluation.out_dir / "metrics.json").read_text())
    assert set(metrics["heads"]) == set(WING_HEADS)
    # a training image lacks its spots mask (see the fixture): refused before anything is predicted
    with pytest.raises(BiosegError, match="has no 'spots' mask"):
        bioseg.evaluate(result.run_dir, split="train", out_dir=tmp_path / "train_eval", progress=False)
    assert not (tmp_path / "train_eval").exists()


def test_check_reads_every_head_mask(wings, tmp_path):
    import shutil

    import tifffile

    from bioseg.data.layouts import discover
    from bioseg.data.validate import check_dataset

    assert not check_dataset(discover(wings)).problems
    copy = Path(shutil.copytree(wings, tmp_path / "copy"))
    veins = sorted((copy / "val" / "masks" / "veins").iterdir())[0]
    tifffile.imwrite(veins, np.zeros((10, 10), np.uint8))
    problems = check_dataset(discover(copy)).problems
    assert len(problems) == 1 and "('veins' mask) is 10×10" in problems[0] and "re-export" in problems[0]
