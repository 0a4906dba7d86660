"""The whole experiment config: the sections of :mod:`bioseg.config.schema` put together, the heads
resolved, and the checks that need more than one section (loss terms against their head's type,
augmentation options against the spatial dims, instance heads against the heads)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from bioseg.config.augment_options import check_augment_options
from bioseg.config.loss_options import check_loss_term
from bioseg.config.schema import (
    AugmentStep,
    DataConfig,
    HeadConfig,
    InferConfig,
    LossTerm,
    ModelConfig,
    OptimConfig,
    PostConfig,
    SchedConfig,
    TrainConfig,
    _as_value_error,
    default_augment,
    default_loss,
)
from bioseg.config.section import Section


class Experiment(Section):
    name: str = "experiment"
    output_dir: Path = Path("runs")
    seed: int = 0
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    heads: dict[str, HeadConfig] | None = Field(
        default=None, description="default: one head 'mask' of the type the classes imply"
    )
    loss: list[LossTerm] | None = Field(default=None, description="default loss for heads without one")
    train: TrainConfig = Field(default_factory=TrainConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    sched: SchedConfig = Field(default_factory=SchedConfig)
    augment: list[AugmentStep] = Field(default_factory=default_augment)
    infer: InferConfig = Field(default_factory=InferConfig)
    post: PostConfig = Field(default_factory=PostConfig)

    @model_validator(mode="after")
    def _resolve_heads(self) -> Experiment:
        if self.heads is None:
            n = self.data.num_classes
            kind = "binary" if n == 2 else "multiclass"
            object.__setattr__(self, "heads", {"mask": HeadConfig(type=kind, classes=n)})
        for head in self.heads.values():
            if head.loss is None:
                head.loss = [t.model_copy() for t in self.loss] if self.loss else default_loss(head.type)
        if len(self.data.patch_size) != self.model.spatial_dims:
            raise ValueError(
                f"data.patch_size {self.data.patch_size} has {len(self.data.patch_size)} values but "
                f"model.spatial_dims is {self.model.spatial_dims}"
            )
        if self.infer.patch_size is None:
            self.infer.patch_size = list(self.data.patch_size)
        self._resolve_instance_heads()
        self._check_options()
        return self

    def _check_options(self) -> None:
        """Loss terms against their heads and augmentation options against the spatial dims, now that
        both are known: the same checks the losses and transforms make when training builds them."""
        for name, head in self.heads.items():
            where = f"head '{name}': "
            for t in head.loss:
                _as_value_error(check_loss_term, t.name, head.type, head.classes, t.kwargs, where=where)
        background, n = self.data.background_class, self.data.num_classes
        if background is not None and background >= n:
            raise ValueError(
                f"data.background_class is {background} but data.classes has {n} classes (0..{n - 1}); "
                "choose one of them, or null when no class is background"
            )
        dims = self.model.spatial_dims
        for i, step in enumerate(self.augment):
            _as_value_error(check_augment_options, step.name, step.kwargs, dims, where=f"augment.{i}: ")

    def _resolve_instance_heads(self) -> None:
        inst = self.post.instances
        if inst.mode == "off":
            return

        def first(targets: tuple[str, ...]) -> str | None:
            return next((name for name, h in self.heads.items() if h.target in targets), None)

        # the foreground mode reads no boundary head: resolving one would set an option it refuses
        if inst.mode == "boundary" and inst.boundary_head is None:
            inst.boundary_head = first(("boundary", "three_class"))
        if inst.foreground_head is None:
            inst.foreground_head = first(("foreground", "three_class")) or first(("mask",))
        for key in ("boundary_head", "foreground_head"):
            name = getattr(inst, key)
            if name is not None and name not in self.heads:
                raise ValueError(f"post.instances.{key} '{name}' is not a head; heads: {', '.join(self.heads)}")
        needed = inst.boundary_head if inst.mode == "boundary" else inst.foreground_head
        if needed is None:
            raise ValueError(
                f"post.instances.mode '{inst.mode}' needs a head with target "
                + ("boundary or three_class" if inst.mode == "boundary" else "foreground, mask or three_class")
            )

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name / f"fold_{self.data.fold}"
