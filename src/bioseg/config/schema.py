"""The experiment config's sections: strict pydantic models, one per section (put together, with the
checks across sections, in :mod:`bioseg.config.experiment`).

Every section maps one to one onto the keyword arguments of the component it configures, so the
Python API needs no YAML. Unknown keys are errors that name the closest valid key.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from bioseg.config.augment_options import check_augment_names
from bioseg.config.channels import parse_channel_spec
from bioseg.config.instances import InstanceConfig
from bioseg.config.loss_options import check_loss_names
from bioseg.config.privacy import PrivacyConfig, check_private_training
from bioseg.config.section import Section
from bioseg.errors import BiosegError


def _as_value_error(check: Callable[..., Any], *args: Any, where: str = "") -> None:
    """Run ``check``; its BiosegError becomes the ValueError pydantic reports (prefixed with ``where``)."""
    try:
        check(*args)
    except BiosegError as err:
        raise ValueError(f"{where}{err}") from None


class Normalization(Section):
    """Intensity normalisation, per channel: (x - low) / (high - low) from percentiles.

    ``per_image``: percentiles of each image (robust to brightness changes between images);
    ``dataset``: fixed ``low``/``high`` values per channel, measured once by ``init-config`` and saved;
    ``none``: values used as they are (cast to float).
    """

    mode: Literal["per_image", "dataset", "none"] = "per_image"
    percentiles: tuple[float, float] = (1.0, 99.8)
    low: list[float] | None = None
    high: list[float] | None = None

    @model_validator(mode="after")
    def _dataset_needs_values(self) -> Normalization:
        if self.mode == "dataset" and (self.low is None or self.high is None):
            raise ValueError("normalization.mode 'dataset' needs 'low' and 'high' (one value per channel)")
        return self


class DataConfig(Section):
    root: Path = Field(description="dataset folder (pairs, x/y or CSV layout)")
    labels: Literal["semantic", "instance"] = Field(
        default="semantic", description="masks hold class indices, or instance ids (0 = background, 1..N objects)"
    )
    axes: str | None = Field(default=None, description="axes of files without metadata, e.g. ZCYX")
    voxel_size: list[float] | None = Field(default=None, description="(z, y, x) or (y, x); None: from the files")
    layout: Literal["auto", "pairs", "xy", "csv", "multitask", "zarr"] = "auto"
    csv: Path | None = Field(default=None, description="CSV with columns image,mask (layout csv)")
    classes: list[str] = Field(default_factory=lambda: ["background", "foreground"])
    background_class: int | None = Field(
        default=0, ge=0, description="class left out of the means (dice_mean, …); None: every class counts"
    )
    mask_values: dict[int, int] | None = Field(
        default=None, description="raw mask value → class index, e.g. {255: 1}; None: values are classes"
    )
    mask_threshold: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="binary masks saved anti-aliased: class 1 where raw > threshold x full scale (1, 255 or "
        "65535, the smallest holding the file's largest value), applied first; None: off",
    )
    channels: list[int | str | dict[str, Any]] | None = Field(
        default=None,
        description="one entry per model input: index, name, {random: [..]}, {merge: [..], mode, dropout}, "
        "{index: i, dropout: p}, blank; None: all channels",
    )
    channel_names: list[str] | None = Field(default=None, description="names of the image channels, in order")
    in_channels: int = Field(default=1, ge=1, description="channels the model sees")
    normalization: Normalization = Field(default_factory=Normalization)
    splits_dir: Path | None = Field(default=None, description="default: <root>/splits")
    fold: int = Field(default=0, ge=0)
    patch_size: list[int] = Field(default_factory=lambda: [256, 256])
    batch_size: int = Field(default=8, ge=1)
    patches_per_epoch: int = Field(default=256, ge=1, description="random patches drawn per epoch")
    foreground_fraction: float = Field(default=0.5, ge=0, le=1, description="patches centred on foreground")
    num_workers: int = Field(default=0, ge=0)
    patch_set: Path | None = Field(default=None, description="precomputed patches ('bioseg patches') to train on")
    resize: int | None = Field(
        default=None, description="fit each image into a square of this size (aspect kept, padded); None: off"
    )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @field_validator("channels")
    @classmethod
    def _valid_channel_spec(cls, v: list | None) -> list | None:
        if v is not None:
            _as_value_error(parse_channel_spec, v)
        return v

    @model_validator(mode="after")
    def _threshold_needs_semantic(self) -> DataConfig:
        if self.mask_threshold is not None and self.labels == "instance":
            raise ValueError(
                "mask_threshold makes binary masks, but labels is 'instance' (object ids): "
                "remove mask_threshold or set labels: semantic"
            )
        return self

    @field_validator("classes")
    @classmethod
    def _at_least_two(cls, v: list[str]) -> list[str]:
        if len(v) < 2:
            raise ValueError("needs at least two class names, e.g. [background, foreground]")
        return v


class ModelConfig(Section):
    name: str = "unet"
    spatial_dims: Literal[2, 3] = 2
    widths: list[int] | None = Field(default=None, description="channels per level; None: the model's own")
    norm: Literal["batch", "instance", "group", "none"] | None = Field(
        default=None, description="None: the model's own"
    )
    residual: bool = False
    upsample: Literal["transpose", "interp", "pixelshuffle"] = "transpose"
    downsample: Literal["maxpool", "conv"] = Field(
        default="maxpool", description="unet: max-pooling, or a strided convolution (learnt, kernel = stride)"
    )
    activation: Literal["leakyrelu", "relu"] = Field(
        default="leakyrelu", description="unet: after each convolution (leaky slope 0.01)"
    )
    dropout: float = Field(default=0.0, ge=0, lt=1)
    pool_sizes: list[list[int]] | None = Field(
        default=None, description="per level and axis, e.g. [[1,2,2],[2,2,2]] for coarse z; None: 2 everywhere"
    )
    init_from: Path | None = Field(
        default=None, description="start from a run's weights (run folder, .safetensors or .ckpt); first conv adapted"
    )
    depth: Literal[18, 34] = Field(default=18, description="resunet: ResNet encoder depth")
    decoder_widths: list[int] | None = Field(default=None, description="resunet: decoder channels, finest first")
    encoder_weights: Path | None = Field(
        default=None, description="resunet: local ResNet weights file (torchvision/timm layout); never downloaded"
    )


class LossTerm(Section):
    """One weighted term; extra keyword arguments go to the loss (e.g. pos_weight, alpha, gamma).

    Name and option names are checked here; whether the term fits its head, and the option values, once
    the head is known (:class:`Experiment`). See :mod:`bioseg.config.loss_options`."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    name: str
    weight: float = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _declared(self) -> LossTerm:
        _as_value_error(check_loss_names, self.name, self.kwargs)
        return self

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class BoundaryOptions(Section):
    mode: Literal["thick", "inner", "outer"] = "thick"
    connectivity: Literal[1, 2] = 1
    width: int = Field(default=1, ge=1)


class WeightMapOptions(Section):
    """U-Net weight map: w = w_c + w0·exp(-(d1 + d2)² / 2σ²); never below the class weight w_c."""

    w0: float = Field(default=10.0, ge=0)
    sigma: float = Field(default=5.0, gt=0, description="in voxel-size units when a voxel size is known")
    class_balance: bool = True
    edges_only: bool = Field(default=False, description="w0 term only on the head's boundary pixels")


class HeadConfig(Section):
    type: Literal["binary", "multiclass"] = "binary"
    classes: int = Field(default=2, ge=2, description="classes including background")
    target: Literal["mask", "foreground", "boundary", "three_class"] = Field(
        default="mask",
        description="mask: the class mask; foreground, boundary, three_class (bg/interior/boundary): from instances",
    )
    boundary: BoundaryOptions = Field(default_factory=BoundaryOptions)
    weight_map: WeightMapOptions | None = None
    source: str | None = Field(
        default=None, description="mask folder / label image of this head (multitask, zarr); default: head name"
    )
    mask_values: dict[int, int] | None = Field(
        default=None, description="raw → class mapping for this head's own masks (multitask, zarr)"
    )
    loss: list[LossTerm] | None = None
    weight: float = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _target_fits_type(self) -> HeadConfig:
        if self.target in ("foreground", "boundary") and self.type != "binary":
            raise ValueError(f"target '{self.target}' needs type: binary")
        if self.target == "three_class" and (self.type != "multiclass" or self.classes != 3):
            raise ValueError("target 'three_class' needs type: multiclass and classes: 3")
        return self

    @property
    def out_channels(self) -> int:
        return 1 if self.type == "binary" else self.classes


class HeadFreezingConfig(Section):
    """Freeze a head whose validation metric reaches ``freeze_above``; unfreeze it at ``unfreeze_below``."""

    metric: str = Field(default="dice_mean", description="per-head validation metric, e.g. dice_mean, cldice")
    freeze_above: float = Field(default=0.95, gt=0, le=1)
    unfreeze_below: float = Field(default=0.9, gt=0, le=1)

    @model_validator(mode="after")
    def _hysteresis(self) -> HeadFreezingConfig:
        if self.unfreeze_below > self.freeze_above:
            raise ValueError("unfreeze_below must not exceed freeze_above")
        return self


class TrainConfig(Section):
    epochs: int = Field(default=20, ge=1)
    precision: Literal["auto", "32", "bf16-mixed", "16-mixed"] = Field(
        default="auto", description="auto: bf16-mixed where bf16 is native and measured faster, else 32"
    )
    gradient_clip: float | None = Field(default=1.0, description="max gradient norm; None: off")
    accumulate_grad_batches: int = Field(default=1, ge=1)
    monitor: str = Field(default="val/dice_mean", description="metric for checkpoints and early stopping")
    monitor_mode: Literal["max", "min"] = "max"
    early_stopping_patience: int | None = Field(default=None, description="epochs; None: off")
    save_top_k: int = Field(default=1, ge=0)
    val_every: int = Field(default=1, ge=1, description="validate every N epochs")
    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: Literal["auto", "ddp"] = Field(
        default="auto",
        description="Lightning's: ddp runs one process per device (gloo on CPUs, nccl on GPUs); "
        "torchrun and SLURM start the processes themselves",
    )
    num_nodes: int = Field(default=1, ge=1, description="machines of a multi-node ddp run")
    deterministic: bool = False
    snapshots: int = Field(default=3, ge=0, description="validation overlays written at the end")
    max_time_minutes: float | None = Field(default=None, description="stop training after this wall time")

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v  # YAML and --set read 32 as a number
    head_freezing: HeadFreezingConfig | None = Field(default=None, description="None: heads never freeze")
    freeze_encoder_epochs: int = Field(default=0, ge=0, description="resunet: keep the encoder frozen this long")
    animation: bool = Field(default=True, description="charts/training.gif: every head on one val image per epoch")
    privacy: PrivacyConfig | None = Field(
        default=None, description="differential privacy (Opacus, needs bioseg[private]); None: off"
    )

    @model_validator(mode="after")
    def _private_options(self) -> TrainConfig:
        check_private_training(self)
        return self


class OptimConfig(Section):
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    momentum: float = Field(default=0.9, ge=0, description="SGD only")


class SchedConfig(Section):
    name: Literal["cosine", "plateau", "onecycle", "none"] = "cosine"
    warmup_epochs: float = Field(default=1.0, ge=0, description="linear warm-up (cosine, none)")
    min_lr: float = Field(default=1e-5, ge=0)
    patience: int = Field(default=5, ge=1, description="plateau only")
    factor: float = Field(default=0.5, gt=0, lt=1, description="plateau only")


class AugmentStep(Section):
    """One augmentation: a registered name, its probability and its keyword arguments.

    Name and option names are checked here; option values once the spatial dims are known
    (:class:`Experiment`). See :mod:`bioseg.config.augment_options`."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    name: str
    p: float = Field(default=0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _declared(self) -> AugmentStep:
        _as_value_error(check_augment_names, self.name, self.kwargs)
        return self

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def default_augment() -> list[AugmentStep]:
    return [
        AugmentStep(name="flip", p=0.5),
        AugmentStep(name="rot90", p=0.5),
        AugmentStep(name="brightness_contrast", p=0.3),
        AugmentStep(name="gaussian_noise", p=0.2),
    ]


class InferConfig(Section):
    patch_size: list[int] | Literal["auto"] | None = Field(
        default="auto",
        description="tile size; auto: tiles as large as a batch of training patches allows, overlapping by the "
        "training patch's margin (each pixel computed fewer times); None: data.patch_size",
    )
    overlap: float = Field(default=0.25, ge=0, lt=1)
    blending: Literal["gaussian", "constant"] = "gaussian"
    batch_size: int = Field(default=4, ge=1, description="tiles per forward pass")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        default="auto", description="auto: bf16 where it is native and measured faster, else fp32"
    )
    threshold: float = Field(default=0.5, gt=0, lt=1, description="binary heads")
    rescale: Literal["off", "auto"] | float = Field(
        default="off",
        description="resize each image so that its objects match the training objects' size: off; auto "
        "(their size measured on a first prediction); or a fixed factor (2: twice as many pixels per axis)",
    )
    object_size: float | None = Field(
        default=None, gt=0, description="diameter of the objects in the images to predict, pixels: rescale to "
        "the training size without measuring; None: measured when rescale is auto",
    )
    tta: bool = Field(
        default=False,
        description="test-time augmentation: average the predictions of the flipped and turned image (2D: 8 "
        "views; 3D: 16, z never swapped with y or x); about that many times slower",
    )
    temperature: dict[str, float] | None = Field(
        default=None, description="per head, the logits are divided by it before the activation (written by "
        "'bioseg calibrate'); None: 1",
    )

    @field_validator("rescale")
    @classmethod
    def _sensible_factor(cls, v: str | float) -> str | float:
        if not isinstance(v, str) and not 0.1 <= v <= 10:
            raise ValueError(f"rescale factor {v} is outside 0.1–10; give a factor such as 0.5 or 2, or 'auto'")
        return v

    @model_validator(mode="after")
    def _one_scale(self) -> InferConfig:
        if self.object_size is not None and not isinstance(self.rescale, str):
            raise ValueError(
                f"object_size ({self.object_size}) and a fixed rescale factor ({self.rescale}) both set the scale; "
                "keep one of them"
            )
        return self


class PostConfig(Section):
    min_size: int = Field(default=0, ge=0, description="remove foreground components smaller than this")
    fill_holes: bool = False
    instances: InstanceConfig = Field(default_factory=InstanceConfig)


def default_loss(head_type: str) -> list[LossTerm]:
    first = "bce" if head_type == "binary" else "ce"
    return [LossTerm(name=first, weight=0.5), LossTerm(name="dice", weight=0.5)]
