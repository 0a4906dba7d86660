"""Dimension-agnostic networks: blocks, UNet with named heads, and the model registry."""

from bioseg.nn import presets  # noqa: F401  (registers hoppernet_lite, hoppernet)
from bioseg.nn.blocks import ConvBlock, Down, Up, group_count, icnr_, voxel_shuffle
from bioseg.nn.factory import MODELS, count_parameters, create_model, list_models, model_options
from bioseg.nn.resunet import ResUNet as ResUNet  # registers model 'resunet'
from bioseg.nn.unet import UNet

__all__ = [
    "MODELS",
    "ConvBlock",
    "Down",
    "UNet",
    "Up",
    "count_parameters",
    "create_model",
    "group_count",
    "icnr_",
    "list_models",
    "model_options",
    "voxel_shuffle",
]
