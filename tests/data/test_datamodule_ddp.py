"""The training set under DDP: as many draws for every process, never a repeat to fill the last one."""

from types import SimpleNamespace

from bioseg import config
from bioseg.data.checked import checked_data
from bioseg.data.datamodule import SegmentationDataModule


def _train_set_length(cells_dir, world_size: int, patches: int) -> int:
    cfg = config.from_dict(
        {"name": "t", "data": {"root": str(cells_dir), "patch_size": [32, 32], "patches_per_epoch": patches}}
    )
    index, split = checked_data(cfg)
    data = SegmentationDataModule(cfg, index, split, progress=False)
    data.trainer = SimpleNamespace(world_size=world_size, current_epoch=0)
    data.setup("fit")
    return len(data.train_dataloader().dataset)


def test_patches_per_epoch_is_rounded_up_to_a_multiple_of_the_processes(cells_dir):
    assert _train_set_length(cells_dir, 1, 10) == 10
    assert _train_set_length(cells_dir, 3, 10) == 12  # DistributedSampler would repeat items 0 and 1
    assert _train_set_length(cells_dir, 2, 10) == 10
