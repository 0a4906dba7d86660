"""LightningDataModule over a discovered dataset and one fold of its split."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from bioseg.config import Experiment
from bioseg.data.dataset import (
    LoadedSample,
    PatchDataset,
    WholeImageDataset,
    channel_mapper,
    fill_missing_weights,
    load_sample,
)
from bioseg.data.layouts import DatasetIndex
from bioseg.data.patch_set import PatchSetDataset
from bioseg.errors import BiosegError


def load_samples(
    index: DatasetIndex, names: list[str], cfg: Experiment, what: str, progress: bool = True
) -> list[LoadedSample]:
    """Load the named samples; training samples keep every channel when the channel spec is random."""
    by_name = {s.name: s for s in index.samples}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise BiosegError(
            f"the {what} split names {len(missing)} sample(s) not in {index.root} (first: {missing[0]}); "
            f"re-run 'bioseg split {index.root}'"
        )
    train = what == "train"
    loading = tqdm(names, desc=f"loading {what}", leave=False, disable=not progress)
    samples = [load_sample(by_name[n], cfg, train) for n in loading]
    fill_missing_weights(samples)
    return samples


class SegmentationDataModule(L.LightningDataModule):
    def __init__(
        self, cfg: Experiment, index: DatasetIndex, split: dict[str, list[str]], progress: bool = True
    ) -> None:
        super().__init__()
        self.cfg, self.index, self.split, self.progress = cfg, index, split, progress
        self.train_samples: list[LoadedSample] = []
        self.val_samples: list[LoadedSample] = []
        self._train_set: PatchDataset | PatchSetDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if not self.val_samples and not self.train_samples:
            if not self.split.get("train"):
                raise BiosegError(f"fold {self.cfg.data.fold} has no training samples; re-run 'bioseg split'")
            if self.cfg.data.patch_set is None:  # a stored patch set replaces the training images
                self.train_samples = load_samples(self.index, self.split["train"], self.cfg, "train", self.progress)
            self.val_samples = load_samples(self.index, self.split.get("val", []), self.cfg, "val", self.progress)

    def set_epoch(self, epoch: int) -> None:
        if self._train_set is not None:
            self._train_set.set_epoch(epoch)

    def train_dataloader(self) -> DataLoader:
        d = self.cfg.data
        # with several processes (DDP), Lightning's DistributedSampler gives process r the items r, r + n,
        # …: distinct draws. A count that n does not divide would be padded with repeats; round it up instead
        processes = self.trainer.world_size if self.trainer is not None else 1
        draws = -(-d.patches_per_epoch // processes) * processes
        if d.patch_set is not None:
            self._train_set = PatchSetDataset(
                d.patch_set, self.cfg, draws, seed=self.cfg.seed, channels=self._random_channels()
            )
        else:
            self._train_set = PatchDataset(
                self.train_samples,
                d.patch_size,
                draws,
                d.foreground_fraction,
                seed=self.cfg.seed,
                channels=self._random_channels(),
            )
        if self.trainer is not None:
            self._train_set.set_epoch(self.trainer.current_epoch)
        return DataLoader(
            self._train_set,
            batch_size=d.batch_size,
            shuffle=False,  # items are already random draws, reproducible per (seed, epoch, index)
            num_workers=d.num_workers,
            persistent_workers=False,
            drop_last=len(self._train_set) >= d.batch_size,
        )

    def _random_channels(self):
        mapper = channel_mapper(self.cfg.data)
        return mapper if mapper is not None and mapper.stochastic else None

    def val_dataloader(self) -> DataLoader:
        # whole images of possibly different sizes: one per batch
        return DataLoader(WholeImageDataset(self.val_samples), batch_size=1, num_workers=0)
