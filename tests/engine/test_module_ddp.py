"""The module's share of a DDP run that one process can check: which validation images are padding."""

from types import SimpleNamespace

from bioseg import config
from bioseg.engine.module import SegmentationModule


def _module_in(world_size: int, rank: int, val_images: int) -> SegmentationModule:
    module = SegmentationModule(config.to_dict(config.from_dict({"name": "t", "data": {"root": "."}})))
    loaders = SimpleNamespace(dataset=list(range(val_images)))
    module._trainer = SimpleNamespace(world_size=world_size, global_rank=rank, val_dataloaders=loaders)
    return module


def test_images_that_distributed_sampler_repeats_are_not_scored():
    # three images on two processes: DistributedSampler pads the list to 0 1 2 0; process 0 gets 0 2,
    # process 1 gets 1 and the repeated 0, which it skips
    assert [_module_in(2, 0, 3)._is_padding(i) for i in range(2)] == [False, False]
    assert [_module_in(2, 1, 3)._is_padding(i) for i in range(2)] == [False, True]
    # one image on two processes: process 1 only holds the repeat
    assert _module_in(2, 1, 1)._is_padding(0)
    assert not _module_in(1, 0, 1)._is_padding(0)
