"""How long one training step of an experiment takes on this machine: the network, loss, augmentation and
optimiser of the config, on a random batch of its patch and batch size, in the precision training uses."""

from __future__ import annotations

import time

import torch

from bioseg import config as config_mod
from bioseg.config import Experiment
from bioseg.engine.module import SegmentationModule, batch_targets
from bioseg.engine.trainer import resolve_precision


def _random_batch(cfg: Experiment) -> dict[str, torch.Tensor]:
    shape = (cfg.data.batch_size, *cfg.data.patch_size)
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.randn((shape[0], cfg.data.in_channels, *shape[1:]), generator=g)}
    for name, head in cfg.heads.items():
        batch[f"target/{name}"] = torch.randint(0, head.classes, (shape[0], 1, *shape[1:]), generator=g)
        if head.weight_map is not None:
            batch[f"weight/{name}"] = torch.ones((shape[0], 1, *shape[1:]))
    return batch


def training_step_seconds(cfg: Experiment, steps: int = 3) -> float:
    """Median seconds of ``steps`` training steps (forward with augmentation, loss, backward, AdamW step),
    after one step that builds the kernels. Nothing is written; the experiment is not changed."""
    module = SegmentationModule(config_mod.to_dict(cfg))
    module.train()
    optimiser = torch.optim.AdamW(module.parameters(), lr=1e-4)
    bf16 = resolve_precision(cfg.train.precision, "cpu") == "bf16-mixed"
    batch = _random_batch(cfg)

    def step() -> float:
        start = time.perf_counter()
        image, moved = batch["image"], {k: v for k, v in batch.items() if k != "image"}
        if module.augment is not None:
            image, moved = module.augment(image, moved, generator=module.generator)
        image = image.contiguous(memory_format=module.memory_format)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            outputs = module.net(image)
            targets, weights = batch_targets(moved, cfg.heads)
            total, _ = module.loss(outputs, targets, weights)
        optimiser.zero_grad(set_to_none=True)
        total.backward()
        optimiser.step()
        return time.perf_counter() - start

    step()
    times = sorted(step() for _ in range(steps))
    return times[len(times) // 2]
