"""The experiment config: strict pydantic models (:mod:`.schema`, :mod:`.experiment`), YAML load/dump and
``--set a.b=c`` overrides (:mod:`.loading`). The options of loss terms and augmentations are declared in
:mod:`.loss_options` and :mod:`.augment_options` and checked on load.

Every section maps one to one onto the keyword arguments of the component it configures, so the
Python API needs no YAML. Unknown keys are errors that name the closest valid key.
"""

from bioseg.config.experiment import Experiment
from bioseg.config.loading import dump, from_dict, load, parse_overrides, to_dict
from bioseg.config.schema import (
    AugmentStep,
    BoundaryOptions,
    DataConfig,
    HeadConfig,
    HeadFreezingConfig,
    InferConfig,
    InstanceConfig,
    LossTerm,
    ModelConfig,
    Normalization,
    OptimConfig,
    PostConfig,
    SchedConfig,
    Section,
    TrainConfig,
    WeightMapOptions,
    default_augment,
    default_loss,
)

__all__ = [
    "AugmentStep",
    "BoundaryOptions",
    "DataConfig",
    "Experiment",
    "HeadConfig",
    "HeadFreezingConfig",
    "InferConfig",
    "InstanceConfig",
    "LossTerm",
    "ModelConfig",
    "Normalization",
    "OptimConfig",
    "PostConfig",
    "SchedConfig",
    "Section",
    "TrainConfig",
    "WeightMapOptions",
    "default_augment",
    "default_loss",
    "dump",
    "from_dict",
    "load",
    "parse_overrides",
    "to_dict",
]
