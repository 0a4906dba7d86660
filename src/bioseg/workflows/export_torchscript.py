"""TorchScript export: the probability network traced once, loadable with ``torch.jit.load`` alone.

TorchScript rather than a ``torch.export`` ``.pt2`` archive: bioimage.io (spec 0.5) takes TorchScript as a
weight format and not ``.pt2``, and a traced UNet keeps every size dynamic (checked at other sizes by
``--validate``). The traced module returns a tuple with one probability tensor per head, in head order;
the head names and the run's settings travel inside the file as ``extra_files`` (``bioseg.json``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bioseg.workflows.export_model import ProbabilityNet, compare

EXTRA = "bioseg.json"


def trace(model: ProbabilityNet, example: np.ndarray) -> torch.jit.ScriptModule:
    """``model`` traced at ``example`` ``(N, C, *spatial)``."""
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the deprecation of torch.jit and the tracer's shape notes
        return torch.jit.trace(model, torch.from_numpy(example), check_trace=False)


def write_torchscript(model: ProbabilityNet, example: np.ndarray, meta: dict[str, Any], path: Path) -> Path:
    traced = trace(model, example)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(traced, str(path), _extra_files={EXTRA: json.dumps(meta)})
    return path


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path), map_location="cpu").eval()


def check_torchscript(path: Path, model: ProbabilityNet, shapes: Sequence[tuple[int, ...]]) -> list[str]:
    """The saved module against PyTorch at ``shapes``: one line per failed check."""
    try:
        loaded = load_torchscript(path)
    except Exception as err:  # a corrupt or foreign file
        return [f"torchscript: {path.name} cannot be loaded: {str(err).splitlines()[0][:200]}"]

    def run(x: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            return [t.numpy() for t in loaded(torch.from_numpy(x))]

    return compare("torchscript", run, model, shapes, list(model.head_types))
