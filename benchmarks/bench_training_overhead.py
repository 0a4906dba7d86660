"""Benchmark 1: training overhead — bioseg's training step against a plain PyTorch loop.

bioseg side: ``SegmentationModule`` + ``SegmentationDataModule`` (random patches from in-memory samples,
DataLoader, collate) + the trainer of ``bioseg.engine.trainer.build_trainer`` (Lightning, per-step logging
to TensorBoard when installed, metrics CSV, charts and checkpoints at epoch ends, gradient clipping, LR
schedule). Augmentation is off here (benchmark 2 measures it).

Reference: the same network (same config, same seed), batch, precision, optimiser (AdamW, same lr and
weight decay), gradient clipping and loss formula (0.5 BCE + 0.5 soft Dice), on a tensor of patches cut
beforehand from the same images: a plain ``for`` loop body with nothing else. It runs twice per bioseg
step: on channels-last tensors, as bioseg trains (the target's reference: the difference is bioseg's
machinery), and in PyTorch's default NCHW format (what a plain script runs; reported beside).

Interleaving is per step: a Lightning callback runs one reference step after every bioseg step, so the
two alternate A B A B … within one process. A bioseg step is the time between the end of our callback and
the end of the next bioseg step (data loading, transfer, forward, loss, backward, clipping, optimiser,
scheduler, logging, every other callback); the reference step is timed around its own call. The ratio is
the median over steps of reference time / bioseg time (= bioseg images/s / reference images/s).
An epoch boundary falls inside every run: the step that crosses it is reported apart (epoch-end work:
checkpoint, CSV, charts, new DataLoader) and amortised over the default epoch length.

With both precisions measured, it also scores ``train.precision: auto``: bioseg at the precision auto
chooses on this CPU against the faster of the two plain loops (target >= 0.95).

    python benchmarks/bench_training_overhead.py [--quick] [--precisions 32 bf16-mixed] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as C
import torch
import torch.nn.functional as F

TARGET = 0.95


def make_dataset(root: Path, n: int, size: int) -> Path:
    """``n`` synthetic cell images of ``size``² with binary masks, as a folder-pair dataset under ``root``."""
    from bioseg.demos.cells2d import write_cells_dataset

    return write_cells_dataset(root, n, size=(size, size), seed=0)


def experiment(
    args: Any, precision: str, data: Path, out: Path, augment: list[dict] | None = None, widths: list[int] | None = None
):
    from bioseg import config as config_mod

    return config_mod.from_dict(
        {
            "model": {"widths": widths} if widths else {},
            "name": f"bench_{precision}",
            "output_dir": str(out),
            "data": {
                "root": str(data),
                "patch_size": [args.patch, args.patch],
                "batch_size": args.batch,
                "patches_per_epoch": args.batch * args.steps_per_epoch,
            },
            "train": {"epochs": args.epochs, "precision": precision},
            "augment": augment or [],
        }
    )


def datamodule_in_memory(cfg: Any):
    """bioseg's data module over every sample of ``cfg.data.root``, loaded into memory (not timed)."""
    from bioseg.data.datamodule import SegmentationDataModule
    from bioseg.data.layouts import discover

    index = discover(cfg.data.root)
    datamodule = SegmentationDataModule(cfg, index, {"train": [s.name for s in index.samples], "val": []})
    datamodule.setup("fit")
    return datamodule


def batch_target(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The binary mask of a training batch, ``(N, 1, *spatial)`` float."""
    key = "target/mask" if "target/mask" in batch else "mask"
    return batch[key].float()


def soft_dice_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """0.5 BCE + 0.5 (1 - soft Dice), the default binary loss written out plainly."""
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    dims = tuple(range(1, p.ndim))
    dice = (2 * (p * target).sum(dims) + 1e-5) / (p.sum(dims) + target.sum(dims) + 1e-5)
    return 0.5 * bce + 0.5 * (1 - dice.mean())


class PlainLoop:
    """The reference: a plain PyTorch training step on pre-cut in-memory patches."""

    def __init__(self, cfg: Any, datamodule: Any, seed: int = 0, channels_last: bool = False) -> None:
        from bioseg.nn.bundle import build_network

        torch.manual_seed(cfg.seed)
        self.format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = build_network(cfg).train().to(memory_format=self.format)
        o = cfg.optim
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda step: 1.0)
        self.clip = cfg.train.gradient_clip
        self.batch = cfg.data.batch_size
        self.bf16 = cfg.train.precision == "bf16-mixed"
        # patches cut beforehand by bioseg's own sampler: every reference step only indexes a tensor
        batches = [b for _, b in zip(range(4), datamodule.train_dataloader(), strict=False)]
        self.images = torch.cat([b["image"] for b in batches])
        self.masks = torch.cat([batch_target(b) for b in batches])
        self.generator = torch.Generator().manual_seed(seed)

    def step(self) -> float:
        idx = torch.randint(len(self.images), (self.batch,), generator=self.generator)
        x, y = self.images[idx].contiguous(memory_format=self.format), self.masks[idx]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.net(x)["mask"]
        loss = soft_dice_bce(logits, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.clip)
        self.opt.step()
        self.sched.step()
        return float(loss.detach())


def interleaver_callback(plains: dict[str, PlainLoop]):
    import lightning as L

    class StepInterleaver(L.Callback):
        """After each bioseg step: time the interval since our last return, then run one step of each
        reference."""

        def __init__(self) -> None:
            # (wall s, process CPU s, main-thread CPU s, crossed an epoch boundary)
            self.bioseg: list[tuple[float, float, float, bool]] = []
            self.plain: dict[str, list[tuple[float, float, float]]] = {name: [] for name in plains}
            self._last: tuple[float, float, float] | None = None
            self._epoch = 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            now = (time.perf_counter(), time.process_time(), time.thread_time())
            if self._last is not None:
                crossed = trainer.current_epoch != self._epoch
                self.bioseg.append((*(a - b for a, b in zip(now, self._last, strict=True)), crossed))
            self._epoch = trainer.current_epoch
            with torch.enable_grad():
                for name, plain in plains.items():
                    start = (time.perf_counter(), time.process_time(), time.thread_time())
                    plain.step()
                    end = (time.perf_counter(), time.process_time(), time.thread_time())
                    self.plain[name].append(tuple(a - b for a, b in zip(end, start, strict=True)))
            self._last = (time.perf_counter(), time.process_time(), time.thread_time())

    return StepInterleaver()


def run_precision(
    args: Any, precision: str, data: Path, profile: bool = False, widths: list[int] | None = None
) -> dict[str, Any]:
    import lightning as L

    from bioseg import config as config_mod
    from bioseg.engine.module import SegmentationModule
    from bioseg.engine.trainer import build_trainer

    with tempfile.TemporaryDirectory(prefix="bioseg-bench-") as tmp:
        cfg = experiment(args, precision, data, Path(tmp), widths=widths)
        L.seed_everything(cfg.seed, verbose=False)
        datamodule = datamodule_in_memory(cfg)
        # bioseg trains channels-last: the same-format loop isolates the machinery's cost, the default-format
        # one is what a plain script would run
        plains = {"channels_last": PlainLoop(cfg, datamodule, channels_last=True), "nchw": PlainLoop(cfg, datamodule)}
        module = SegmentationModule(config_mod.to_dict(cfg))
        trainer, _, _ = build_trainer(cfg, cfg.run_dir, has_val=False, progress=False)
        timer = interleaver_callback(plains)
        trainer.callbacks.append(timer)
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        trainer.fit(module, datamodule=datamodule)
        if profiler:
            profiler.disable()

    out = {"precision": precision, **against(timer.bioseg, timer.plain["channels_last"], args)}
    out["reference_memory_format"] = "channels_last"
    out["nchw_reference"] = against(timer.bioseg, timer.plain["nchw"], args)
    if profiler:
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(45)
        out["profile_top"] = stream.getvalue()
    return out


def against(bioseg: list, plain: list, args: Any) -> dict[str, Any]:
    """bioseg's steps against one reference's: paired ratios, images per second, overhead per step."""
    # bioseg[j] ends at step j + 2 (1-based) and plain[j + 1] ran right after that step
    warm = max(1, args.warmup)
    pairs = list(zip(bioseg[warm - 1 :], plain[warm:], strict=False))
    regular = [(b, p) for b, p in pairs if not b[3]]
    crossing = [b[0] for b, _ in pairs if b[3]]
    bioseg_s, plain_s = [b[0] for b, _ in regular], [p[0] for _, p in regular]
    ratios = C.paired_ratios(plain_s, bioseg_s)
    cpu_ratios = C.paired_ratios([p[1] for _, p in regular], [b[1] for b, _ in regular])
    med_b, med_p = C.median(bioseg_s), C.median(plain_s)
    epoch_extra = max(0.0, C.median(crossing) - med_b) if crossing else 0.0
    default_steps_per_epoch = 256 // args.batch  # data.patches_per_epoch default / batch
    # the median paired ratio, scaled by the share of a step that the epoch-end work adds on average
    ratio = C.median(ratios)
    amortised = ratio * med_b / (med_b + epoch_extra / default_steps_per_epoch)
    return {
        "steps_measured": len(regular),
        "bioseg_step_s": bioseg_s,
        "reference_step_s": plain_s,
        "bioseg_images_per_s": args.batch / med_b,
        "reference_images_per_s": args.batch / med_p,
        "ratio": ratio,
        "ratio_spread": C.spread(ratios),
        "ratio_of_medians": med_p / med_b,
        "ratio_cpu_time": C.median(cpu_ratios),
        "overhead_ms_per_step": 1000 * C.median([b - p for b, p in zip(bioseg_s, plain_s, strict=True)]),
        # CPU time of the main thread (Python, Lightning, data loading, its share of the kernels): the
        # least sensitive to other processes
        "overhead_main_thread_cpu_ms_per_step": 1000 * C.median([b[2] - p[2] for b, p in regular]),
        "epoch_end_extra_s": epoch_extra,
        "ratio_with_epoch_end_amortised": amortised,
        "amortised_over_steps": default_steps_per_epoch,
    }


def auto_against_faster_plain(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """bioseg at the precision ``auto`` chooses here against the faster of the plain fp32 and bf16 loops
    (channels-last): the paired step ratio at the chosen precision, times the plain loops' speed ratio
    when the faster loop is the other precision; None unless both were measured."""
    from bioseg.engine.trainer import resolve_precision

    by = {r["precision"]: r for r in results}
    if not {"32", "bf16-mixed"} <= set(by):
        return None
    chosen = resolve_precision("auto", "cpu")
    faster = max(("32", "bf16-mixed"), key=lambda k: by[k]["reference_images_per_s"])
    value = by[chosen]["ratio"] * by[chosen]["reference_images_per_s"] / by[faster]["reference_images_per_s"]
    return {
        "chosen": chosen,
        "bioseg_images_per_s": by[chosen]["bioseg_images_per_s"],
        "faster_plain": faster,
        "faster_plain_images_per_s": by[faster]["reference_images_per_s"],
        **C.target(value, TARGET),
    }


def main(argv: list[str] | None = None) -> int:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--precisions", nargs="+", default=["32", "bf16-mixed"])
    p.add_argument("--patch", type=int, default=None, help="patch side (default 256; --quick 128)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps-per-epoch", type=int, default=None, help="default 8 (--quick 5)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2, help="first steps not counted")
    p.add_argument("--profile", action="store_true", help="cProfile the bioseg run; print the top functions")
    args = p.parse_args(argv)
    args.patch = args.patch or (128 if args.quick else 256)
    args.steps_per_epoch = args.steps_per_epoch or (5 if args.quick else 8)
    C.setup_threads(args.threads)
    C.quiet_lightning()

    print(f"training overhead: patch {args.patch}², batch {args.batch}, precisions {args.precisions}")
    with tempfile.TemporaryDirectory(prefix="bioseg-bench-data-") as tmp:
        data = make_dataset(Path(tmp), 6, 2 * args.patch)
        results = [run_precision(args, prec, data, profile=args.profile) for prec in args.precisions]
        # the same with a tiny network on 32² patches: compute is negligible, so the difference per step is
        # the fixed cost of bioseg's machinery, measured with little noise
        tiny = argparse.Namespace(**{**vars(args), "patch": 32, "steps_per_epoch": 15, "warmup": 3})
        probe = run_precision(tiny, "32", data, widths=[4, 8])

    rows = []
    for r in results:
        rows.append(
            [
                r["precision"],
                r["bioseg_images_per_s"],
                r["reference_images_per_s"],
                r["ratio"],
                f"{r['ratio_spread'][0]:.3f}-{r['ratio_spread'][1]:.3f}",
                r["ratio_cpu_time"],
                r["ratio_with_epoch_end_amortised"],
                r["epoch_end_extra_s"],
                "pass" if r["ratio"] >= TARGET else "FAIL",
                r["nchw_reference"]["reference_images_per_s"],
                r["nchw_reference"]["ratio"],
            ]
        )
    print()
    headers = ["precision", "bioseg img/s", "plain img/s", "ratio", "range", "CPU ratio", "ratio+epoch", "epoch s"]
    headers += ["≥0.95", "plain NCHW img/s", "ratio vs NCHW"]
    print(C.table(rows, headers))
    print(
        "\nplain: the loop on channels-last tensors, as bioseg trains; plain NCHW: the same loop in PyTorch's default\n"
        "memory format (a step of each after every bioseg step)\n"
        "ratio: median over steps of plain step time / bioseg step time (wall clock); CPU-time ratio: the same\n"
        "with process CPU time (less sensitive to other processes); ratio+epoch: with the epoch-end work\n"
        f"amortised over {results[0]['amortised_over_steps']} steps (the default epoch)"
    )
    print(
        f"fixed cost per step (tiny network, 32² patches, batch {args.batch}): bioseg "
        f"{1000 * C.median(probe['bioseg_step_s']):.1f} ms, plain {1000 * C.median(probe['reference_step_s']):.1f} ms"
        f" -> {probe['overhead_ms_per_step']:.1f} ms of overhead per step "
        f"({probe['overhead_main_thread_cpu_ms_per_step']:.1f} ms of main-thread CPU time)"
    )
    for r in results:
        share = probe["overhead_ms_per_step"] / 1000 / C.median(r["reference_step_s"])
        r["overhead_share_from_probe"] = share
        print(f"  = {100 * share:.1f}% of a plain {r['precision']} step here (ratio about {1 / (1 + share):.3f})")
    auto = auto_against_faster_plain(results)
    if auto:
        print(
            f"\nprecision auto -> {auto['chosen']}: bioseg {auto['bioseg_images_per_s']:.2f} img/s against the faster "
            f"plain loop ({auto['faster_plain']}, {auto['faster_plain_images_per_s']:.2f} img/s): {auto['value']:.3f} "
            f"(target >= {TARGET}: {'pass' if auto['pass'] else 'FAIL'})"
        )
    for r in results:
        if "profile_top" in r:
            print(f"\n--- cProfile, bioseg {r['precision']} (cumulative) ---\n{r.pop('profile_top')}")
    path = C.write_result(
        "training_overhead",
        {
            "settings": {
                "patch": [args.patch, args.patch],
                "batch": args.batch,
                "steps_per_epoch": args.steps_per_epoch,
                "epochs": args.epochs,
                "warmup_steps": args.warmup,
                "augment": "off",
                "model": "unet, default config (widths 16-32-64-128, batch norm)",
                "reference": "plain loop: same net, AdamW, clip 1.0, 0.5 BCE + 0.5 soft Dice, pre-cut patches, "
                "channels-last like bioseg (the target); nchw_reference: the same loop in the default format",
                "interleaving": "per step (one step of each reference after every bioseg step)",
            },
            "fixed_cost_probe": {
                "settings": "widths [4, 8], patch 32², fp32, same batch",
                "bioseg_step_ms": 1000 * C.median(probe["bioseg_step_s"]),
                "reference_step_ms": 1000 * C.median(probe["reference_step_s"]),
                "overhead_ms_per_step": probe["overhead_ms_per_step"],
                "overhead_main_thread_cpu_ms_per_step": probe["overhead_main_thread_cpu_ms_per_step"],
                "ratio": probe["ratio"],
            },
            "results": {
                r["precision"]: {**{k: v for k, v in r.items() if k != "precision"}, **C.target(r["ratio"], TARGET)}
                for r in results
            },
            "auto": auto,
        },
        args.out,
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
