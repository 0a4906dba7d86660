"""bioseg: train and apply deep-learning segmentation models to biological images.

The public API is imported lazily so that ``import bioseg`` (and ``bioseg --help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "train": ("bioseg.engine.trainer", "train"),
    "TrainResult": ("bioseg.engine.trainer", "TrainResult"),
    "Predictor": ("bioseg.inference.predictor", "Predictor"),
    "ModelBundle": ("bioseg.nn.bundle", "ModelBundle"),
    "predict": ("bioseg.inference.files", "predict_files"),
    "evaluate": ("bioseg.workflows.evaluate", "evaluate_run"),
    "export": ("bioseg.workflows.export", "export_run"),
    "evaluate_folders": ("bioseg.workflows.evaluate", "evaluate_folders"),
    "load_config": ("bioseg.config", "load"),
    "Experiment": ("bioseg.config", "Experiment"),
    "list_models": ("bioseg.nn", "list_models"),
    "create_model": ("bioseg.nn", "create_model"),
    "BiosegError": ("bioseg.errors", "BiosegError"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        module, attr = _API[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'bioseg' has no attribute '{name}'")
