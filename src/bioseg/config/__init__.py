"""The experiment config: strict pydantic models (:mod:`.schema`, :mod:`.experiment`; ``post.instances`` in
:mod:`.instances`), YAML load/dump and ``--set a.b=c`` overrides (:mod:`.loading`). The options of loss terms
and augmentations are declared in :mod:`.loss_options` and :mod:`.augment_options` and checked on load.

Every section maps one to one onto the keyword arguments of the component it configures, so the
Python API needs no YAML. Unknown keys are errors that name the closest valid key.
"""

from bioseg.config.experiment import Experiment
from bioseg.config.instances import InstanceConfig
from bioseg.config.loading import as_experiment, dump, from_dict, load, parse_overrides, to_dict
from bioseg.config.privacy import PrivacyConfig
from bioseg.config.schema import (
    AugmentStep,
    BoundaryOptions,
    DataConfig,
    HeadConfig,
    HeadFreezingConfig,
    InferConfig,
    LossTerm,
    ModelConfig,
    Normalization,
    OptimConfig,
    PostConfig,
    SchedConfig,
    TrainConfig,
    WeightMapOptions,
    default_augment,
    default_loss,
)
from bioseg.config.section import Section

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
    "PrivacyConfig",
    "SchedConfig",
    "Section",
    "TrainConfig",
    "WeightMapOptions",
    "as_experiment",
    "default_augment",
    "default_loss",
    "dump",
    "from_dict",
    "load",
    "parse_overrides",
    "to_dict",
]
