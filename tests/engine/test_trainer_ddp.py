"""Training in two CPU processes (Lightning DDP, gloo): distinct patches per process, one model, reduced
validation scores, a resumed run. Each test starts a script in a subprocess, as DDP starts it again per process."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import TINY

from bioseg.reports.history import read_metrics_csv

# Run by each process: records which items of the training set it drew (epoch, index, image hash) and
# its final weights, then trains as `bioseg train` does.
SCRIPT = '''
import hashlib, json, sys
from pathlib import Path

import torch

import bioseg
from bioseg.data.dataset import PatchDataset
from bioseg.engine.module import SegmentationModule

config, out, resume, overrides = json.loads(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "resume", sys.argv[4:]
drawn = []
real_getitem = PatchDataset.__getitem__


def getitem(self, index):
    item = real_getitem(self, index)
    drawn.append([self.epoch, index, hashlib.sha1(item["image"].numpy().tobytes()).hexdigest()])
    return item


def on_fit_end(self):
    weights = {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}
    torch.save(weights, out / f"rank{self.global_rank}.pt")
    (out / f"rank{self.global_rank}.json").write_text(json.dumps(drawn))


PatchDataset.__getitem__ = getitem
SegmentationModule.on_fit_end = on_fit_end
bioseg.train(config, overrides=overrides, resume=resume, progress=False)
'''

PATCHES = 16  # 8 per process, two steps of 4 each
DDP = [
    *TINY,
    "train.accelerator=cpu",
    "train.devices=2",
    "train.strategy=ddp",
    "train.precision=32",
    "train.snapshots=0",
    "train.animation=false",
    "data.num_workers=0",
    f"data.patches_per_epoch={PATCHES}",
]


def _train_two_processes(cells_dir: Path, work: Path, out: Path, *extra: str, resume: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    script = work / "train_ddp.py"
    script.write_text(SCRIPT)
    config = {"name": "ddp", "output_dir": str(work / "runs"), "data": {"root": str(cells_dir)}}
    command = [sys.executable, str(script), json.dumps(config), str(out), "resume" if resume else "new", *DDP, *extra]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]


def _drawn(out: Path, rank: int) -> list[tuple[int, int, str]]:
    return [tuple(d) for d in json.loads((out / f"rank{rank}.json").read_text())]


@pytest.fixture(scope="module")
def ddp_run(cells_dir, tmp_path_factory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("ddp")
    _train_two_processes(cells_dir, work, work / "first")
    return work, work / "runs" / "ddp" / "fold_0"


def test_processes_draw_distinct_patches_that_make_up_the_epoch(ddp_run):
    work, _ = ddp_run
    first, second = _drawn(work / "first", 0), _drawn(work / "first", 1)
    assert len(first) == len(second) == PATCHES // 2
    assert {e for e, _, _ in first + second} == {0}
    # DistributedSampler splits the items: together the one-process epoch, each item drawn once
    assert sorted(i for _, i, _ in first + second) == list(range(PATCHES))
    assert not {h for _, _, h in first} & {h for _, _, h in second}  # the patches themselves differ


def test_saved_model_is_rank_zeros_weights_which_rank_one_shares(ddp_run):
    from safetensors.torch import load_file

    work, run = ddp_run
    rank0, rank1 = (torch.load(work / "first" / f"rank{r}.pt") for r in (0, 1))
    saved = load_file(str(run / "model" / "weights.safetensors"))
    assert set(saved) == set(rank0) == set(rank1)
    assert all(torch.equal(saved[k], rank0[k]) and torch.equal(rank0[k], rank1[k]) for k in saved)


def test_validation_scores_count_both_processes_images(ddp_run):
    """Each process validates one of the two val images; metrics.csv holds the scores of both together:
    those one process computes on both images with the same weights."""
    import lightning as L

    from bioseg import config as config_mod
    from bioseg.data.checked import checked_data
    from bioseg.data.datamodule import SegmentationDataModule
    from bioseg.engine.module import SegmentationModule

    _, run = ddp_run
    cfg = config_mod.load(run / "config.yaml")
    index, split = checked_data(cfg)
    assert len(split["val"]) == 2
    module = SegmentationModule(config_mod.to_dict(cfg))
    best = next((run / "checkpoints").glob("best-*.ckpt"))
    module.load_state_dict(torch.load(best, map_location="cpu", weights_only=False)["state_dict"])
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)  # fmt: skip
    data = SegmentationDataModule(cfg, index, split, progress=False)
    alone = trainer.validate(module, datamodule=data, verbose=False)[0]
    logged = read_metrics_csv(run / "metrics.csv")[0]
    for key in ("val/dice_mean", "val/loss", "val/mask/dice/foreground"):
        assert logged[key] == pytest.approx(alone[key], abs=1e-6), key


def test_resume_continues_with_the_next_epochs_patches(ddp_run, cells_dir):
    work, run = ddp_run
    _train_two_processes(cells_dir, work, work / "resumed", "train.epochs=2", resume=True)
    first, second = _drawn(work / "resumed", 0), _drawn(work / "resumed", 1)
    assert {e for e, _, _ in first + second} == {1}
    assert sorted(i for _, i, _ in first + second) == list(range(PATCHES))
    assert [row["epoch"] for row in read_metrics_csv(run / "metrics.csv")] == [0, 1]


def test_one_process_options_are_refused_with_several():
    from bioseg import config
    from bioseg.engine.trainer import _check_several_processes
    from bioseg.errors import BiosegError

    base = {"name": "t", "data": {"root": "."}}
    _check_several_processes(config.from_dict(base))  # nothing that needs one process
    frozen = config.from_dict({**base, "train": {"devices": 2, "strategy": "ddp", "freeze_encoder_epochs": 2}})
    with pytest.raises(BiosegError, match="train.freeze_encoder_epochs cannot be set when several processes train"):
        _check_several_processes(frozen)
