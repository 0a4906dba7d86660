"""``bioseg.train``: config → checked data → Lightning fit → a self-describing run folder."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from bioseg import config as config_mod
from bioseg.config import Experiment, as_experiment
from bioseg.data.checked import checked_data
from bioseg.data.datamodule import SegmentationDataModule
from bioseg.data.dataset import LoadedSample
from bioseg.data.object_sizes import depth_diameter, training_object_sizes
from bioseg.engine.callbacks import EpochMetricsCSV, TrainingCharts
from bioseg.engine.epoch_log import EpochLog
from bioseg.engine.module import SegmentationModule
from bioseg.engine.run_summary import closing_summary
from bioseg.errors import BiosegError
from bioseg.inference import precision as precision_choice
from bioseg.io.folders import check_output_folder
from bioseg.nn.bundle import save_model
from bioseg.reports.history import read_metrics_csv
from bioseg.reports.run_report import write_run_report


@dataclass
class TrainResult:
    run_dir: Path
    best_checkpoint: Path | None
    best_score: float | None
    monitor: str
    history: list[dict[str, float]] = field(default_factory=list)
    init_report: str | None = None  # what model.init_from loaded, adapted and skipped
    summary: list[str] = field(default_factory=list)  # the best monitored value, what it means, each head's
    global_rank: int = 0  # a DDP process other than 0 writes nothing and returns only where the run is

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "model"


def train(
    config: Experiment | dict[str, Any] | str | Path,
    *,
    fold: int | None = None,
    resume: bool = False,
    overrides: list[str] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train one fold of an experiment and write its run folder (see DESIGN.md, "The run folder").

    ``progress``: Lightning's progress bar; without it, one line per epoch goes to the logger ``bioseg``
    (INFO), which the command line prints."""
    cfg = as_experiment(config, overrides, fold=fold)
    _note_h_of_earlier_configs(cfg)
    run_dir = check_output_folder(cfg.run_dir, "run folder")
    last = run_dir / "checkpoints" / "last.ckpt"
    if resume and not last.is_file():
        raise BiosegError(f"--resume: {last} does not exist; train without --resume to start this run")
    if not resume and last.is_file():
        raise BiosegError(
            f"{run_dir} already holds a run: add --resume to continue it, or pick another name (--set name=NEW)"
        )
    module_class, datamodule_class = SegmentationModule, SegmentationDataModule
    if cfg.train.privacy is not None:  # DP-SGD (Opacus): see engine/privacy.py
        from bioseg.engine import privacy

        if resume:
            raise BiosegError("a private run (train.privacy) cannot resume: its spent epsilon would be lost; "
                              "train it again under another name")  # fmt: skip
        cfg = privacy.private_experiment(cfg)
        module_class, datamodule_class = privacy.PrivateSegmentationModule, privacy.PrivateDataModule
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    # network, loss terms and augmentation first: a bad option stops here, before any image is read
    module = module_class(config_mod.to_dict(cfg))
    index, split = checked_data(cfg)
    # the trainer first: it knows this process's rank (DDP, torchrun, SLURM), and only rank 0 writes
    trainer, checkpoint, monitor = build_trainer(cfg, run_dir, has_val=bool(split.get("val")), progress=progress)
    writer = trainer.is_global_zero
    if trainer.world_size > 1:
        _check_several_processes(cfg)
    if writer:
        run_dir.mkdir(parents=True, exist_ok=True)
        config_mod.dump(cfg, run_dir / "config.yaml")
    datamodule = datamodule_class(cfg, index, split, progress=progress)
    init_report = None if resume else initialise_from(cfg, module.net, run_dir, write=writer)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*is smaller than the logging interval.*")
        warnings.filterwarnings("ignore", ".*overridden `on_after_batch_transfer`.*")
        warnings.filterwarnings("ignore", ".*not supported by the model summary.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        warnings.filterwarnings("ignore", ".*sync_dist=True.*")  # DDP: the module reduces its scores itself
        warnings.filterwarnings("ignore", ".*Full backward hook is firing.*")  # Opacus's hooks on the first layer
        warnings.filterwarnings("ignore", ".*returned `None`.*")  # Opacus: an empty Poisson batch, see privacy.py
        warnings.filterwarnings("ignore", ".*Secure RNG turned off.*")  # Opacus: a seeded generator, reproducible
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if resume else None)
    if not trainer.is_global_zero:  # DDP keeps every process's weights equal: rank 0 saves the model
        trainer.strategy.barrier("bioseg-run-folder")  # returns once the run folder is whole (--fold all reads it)
        return TrainResult(run_dir, None, None, monitor, global_rank=trainer.global_rank)
    try:
        return _finish_run(cfg, run_dir, module, datamodule, checkpoint, monitor, init_report)
    finally:
        trainer.strategy.barrier("bioseg-run-folder")  # no-op in one process


def _finish_run(cfg, run_dir, module, datamodule, checkpoint, monitor, init_report) -> TrainResult:
    """Rank 0, after fit: the best weights into ``model/``, snapshots, the report, the closing summary."""
    last = run_dir / "checkpoints" / "last.ckpt"
    best = Path(checkpoint.best_model_path) if checkpoint.best_model_path else (last if last.is_file() else None)
    if best is not None:
        state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
    objects = training_objects(cfg, datamodule.train_samples, module.net, datamodule.val_samples)
    save_model(module.net, cfg, run_dir, objects)
    write_snapshots(cfg, run_dir, datamodule)
    write_run_report(run_dir, "training")
    score = float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else None
    history = read_metrics_csv(run_dir / "metrics.csv")
    mode = checkpoint.mode
    summary = closing_summary(cfg, history, monitor, mode, score)
    if cfg.train.privacy is not None:
        from bioseg.engine.privacy import privacy_summary

        summary += [line for line in [privacy_summary(run_dir)] if line]
    return TrainResult(
        run_dir=run_dir,
        best_checkpoint=best,
        best_score=score,
        monitor=monitor,
        history=history,
        init_report=init_report,
        summary=summary,
    )


def training_objects(
    cfg: Experiment, samples: list[LoadedSample], net: torch.nn.Module, check: list[LoadedSample] | None = None
) -> dict[str, Any] | None:
    """Sizes of the objects in the training masks (the one mask of a sample, else its first head's
    target), of those the trained ``net`` predicts in the training images, and a size model that reads
    them from an image (checked on the ``check`` samples, else the training ones): stored with the model
    so that prediction can match new images to them (see :mod:`bioseg.inference.rescale`)."""
    from bioseg.inference.predictor import Predictor
    from bioseg.inference.rescale import predicted_sizes
    from bioseg.inference.size_model import size_model_for

    whole = all(s.mask is not None for s in samples)
    masks = [s.mask if whole else next(iter(s.targets.values())) for s in samples if s.targets]
    spacing = tuple(cfg.data.voxel_size) if cfg.data.voxel_size else None
    sizes = training_object_sizes(masks, instance=whole and cfg.data.labels == "instance", spacing=spacing)
    if sizes is None:
        return None
    usable = [s for s in samples if s.targets and s.image.shape[0] == cfg.data.in_channels]  # not random channels
    predictor = Predictor(net, cfg)
    sizes["predicted_depth_diameter_px"] = predicted_sizes(predictor, [s.image for s in usable])
    train = [(s.image, depth_diameter(np.asarray(s.mask if whole else next(iter(s.targets.values()))) > 0))
             for s in usable]  # fmt: skip
    check_images = [s.image for s in (check or usable) if s.image.shape[0] == cfg.data.in_channels]
    sizes["size_model"] = size_model_for(predictor, train, check_images, sizes)
    return sizes


def _note_h_of_earlier_configs(cfg: Experiment) -> None:
    """init-config used to write ``h`` as the finest voxel size, one voxel in micrometres; a number is
    voxels now, so such a config would ask for a fraction of a voxel: say how to keep one voxel."""
    inst, voxel = cfg.post.instances, cfg.data.voxel_size
    if inst.mode == "off" or inst.seed_method != "h_maxima" or not voxel or isinstance(inst.h, str):
        return
    if inst.h == float(min(voxel)) and inst.h != 1.0:
        logging.getLogger("bioseg").warning(
            f"post.instances.h is {inst.h:g}, which is voxels now (it was µm when a voxel size was known); "
            f"for one voxel write h: 1 (or h: '{inst.h:g} um')"
        )


def _check_several_processes(cfg: Experiment) -> None:
    """Options that one process honours and several (DDP) cannot: a BiosegError naming the first."""
    t = cfg.train
    clashes = {
        "privacy": (t.privacy is not None, "null", "Opacus accounts for one process"),
        "head_freezing": (t.head_freezing is not None, "null", "DDP trains the same parameters throughout"),
        "freeze_encoder_epochs": (t.freeze_encoder_epochs != 0, "0", "DDP trains the same parameters throughout"),
    }
    for key, (clash, wanted, why) in clashes.items():
        if clash:
            raise BiosegError(
                f"train.{key} cannot be set when several processes train ({why}): "
                f"set train.{key}={wanted}, or train.devices=1 and train.num_nodes=1"
            )


def initialise_from(cfg: Experiment, net: torch.nn.Module, run_dir: Path, *, write: bool = True) -> str | None:
    """Load ``model.init_from`` into ``net`` (first conv adapted to the channel count); the report is
    written to ``init_report.json`` in the run folder (``write``: only DDP's rank 0) and returned as one line."""
    if cfg.model.init_from is None:
        return None
    import json

    from bioseg.nn.transfer import read_state, transfer_weights

    report = transfer_weights(net, read_state(cfg.model.init_from))
    if write:
        (run_dir / "init_report.json").write_text(json.dumps(report.to_dict(), indent=2))
    return report.summary()


def write_patches(
    config: Experiment | dict[str, Any] | str | Path,
    out_dir: str | Path,
    *,
    per_image: int = 32,
    fold: int | None = None,
    overrides: list[str] | None = None,
    progress: bool = True,
) -> Path:
    """``bioseg patches``: the fold's training patches with their targets, computed once and stored."""
    from bioseg.data.datamodule import load_samples
    from bioseg.data.patch_set import write_patch_set

    cfg = as_experiment(config, overrides, fold=fold)
    out_dir = check_output_folder(out_dir, "patch set folder")
    index, split = checked_data(cfg)
    samples = load_samples(index, split["train"], cfg, "train", progress)
    return write_patch_set(cfg, samples, Path(out_dir), patches_per_image=per_image, progress=progress)


def build_trainer(cfg: Experiment, run_dir: Path, *, has_val: bool, progress: bool):
    t = cfg.train
    monitor, mode = (t.monitor, t.monitor_mode) if has_val else ("train/loss_epoch", "min")
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best-{epoch:03d}",
        monitor=monitor,
        mode=mode,
        save_top_k=t.save_top_k,
        auto_insert_metric_name=False,
    )
    # a checkpoint of its own: with save_last on the monitored one, Lightning refreshes last.ckpt only
    # when a new best is saved, and --resume would restart from the best epoch rather than the latest
    latest = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1, enable_version_counter=False
    )
    callbacks: list[L.Callback] = [
        checkpoint,
        latest,
        EpochMetricsCSV(run_dir / "metrics.csv"),
        TrainingCharts(run_dir / "metrics.csv", run_dir / "charts"),
    ]
    if not progress:  # no bar: a line per epoch says how training goes
        budget = t.max_time_minutes * 60 if t.max_time_minutes else None
        callbacks.append(EpochLog(t.epochs, monitor, budget))
    if t.privacy is not None:
        from bioseg.engine.privacy import PrivacyBudget

        callbacks.append(PrivacyBudget(run_dir))
    if t.animation and has_val:
        from bioseg.engine.animation import TrainingAnimation

        callbacks.append(TrainingAnimation(run_dir / "charts" / "training.gif"))
    if t.head_freezing is not None:
        from bioseg.engine.head_freezing import HeadFreezing

        f = t.head_freezing
        callbacks.append(HeadFreezing(f.metric, f.freeze_above, f.unfreeze_below))
    if t.early_stopping_patience is not None:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=t.early_stopping_patience))
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    trainer = L.Trainer(
        default_root_dir=run_dir,
        max_epochs=t.epochs,
        max_time={"minutes": t.max_time_minutes} if t.max_time_minutes else None,
        precision=resolve_precision(t.precision, t.accelerator),
        gradient_clip_val=None if t.privacy else t.gradient_clip,  # private: Opacus clips each image's gradient
        accumulate_grad_batches=t.accumulate_grad_batches,
        check_val_every_n_epoch=t.val_every,
        limit_val_batches=1.0 if has_val else 0,
        num_sanity_val_steps=1 if has_val else 0,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,  # ddp: gloo on CPUs, nccl on GPUs (Lightning's choice)
        num_nodes=t.num_nodes,
        deterministic=t.deterministic,
        callbacks=callbacks,
        logger=_logger(run_dir),
        enable_progress_bar=progress,
        enable_model_summary=progress,
        log_every_n_steps=1,
    )
    return trainer, checkpoint, monitor


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto`` → bf16-mixed on a GPU with bf16, 16-mixed on other GPUs; on a CPU, bf16-mixed where its
    flags say bf16 is native and a measured conv step confirms it is faster (see
    :mod:`bioseg.inference.precision`), else 32. Other values as they are."""
    if precision != "auto":
        return precision
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if precision_choice.cpu_has_native_bf16() else "32"


def _logger(run_dir: Path):
    try:
        import tensorboard  # noqa: F401  (optional: TensorBoard logs only when it is installed)
        from lightning.pytorch.loggers import TensorBoardLogger
    except ImportError:
        return False
    return TensorBoardLogger(save_dir=str(run_dir), name="logs", version="", default_hp_metric=False)


def write_snapshots(cfg: Experiment, run_dir: Path, datamodule: SegmentationDataModule) -> list[Path]:
    """Validation overlays (image, truth, prediction) from the exported model, as a user would see them."""
    from bioseg.inference.predictor import Predictor
    from bioseg.reports.charts import save_snapshot

    samples = datamodule.val_samples[: cfg.train.snapshots]
    if not samples:
        return []
    predictor = Predictor.from_run(run_dir)
    paths = []
    for s in samples:
        prediction = predictor.predict_prepared(s.image)
        for head, labels in prediction.labels.items():
            suffix = "" if len(cfg.heads) == 1 else f"_{head}"
            path = run_dir / "charts" / "snapshots" / f"{Path(s.name).name}{suffix}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            classes = cfg.heads[head].classes
            paths.append(save_snapshot(path, s.image, s.targets[head], labels, classes, title=f"{s.name} {suffix}"))
    return paths
