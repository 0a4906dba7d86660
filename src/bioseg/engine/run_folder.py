"""The self-describing run folder: what prediction needs lives in ``model/``.

``model/weights.safetensors`` holds the network's tensors; ``model/model.json`` holds everything else a
predictor needs (the resolved experiment, and for people reading it: model, heads, classes, channels,
normalisation and inference settings).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from bioseg import __version__
from bioseg.config import Experiment, to_dict
from bioseg.errors import BiosegError

MODEL_DIR = "model"
WEIGHTS = "weights.safetensors"
META = "model.json"


def export_model(net: torch.nn.Module, cfg: Experiment, run_dir: Path) -> Path:
    """Write ``run_dir/model/`` from a trained network and its experiment."""
    out = Path(run_dir) / MODEL_DIR
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    tmp = out / (WEIGHTS + ".tmp")  # written then renamed: a crash never leaves half a weights file
    save_file(state, str(tmp))
    tmp.replace(out / WEIGHTS)
    d = to_dict(cfg)
    meta = {
        "format": "bioseg-model",
        "format_version": 1,
        "bioseg_version": __version__,
        "model": d["model"] | {"in_channels": cfg.data.in_channels},
        "heads": d["heads"],
        "classes": d["data"]["classes"],
        "channels": d["data"]["channels"],
        "normalization": d["data"]["normalization"],
        "mask_values": d["data"]["mask_values"],
        "infer": d["infer"],
        "post": d["post"],
        "experiment": d,
    }
    (out / META).write_text(json.dumps(meta, indent=2))
    return out


def find_model_dir(path: str | Path) -> Path:
    """Accept a run folder (``…/fold_0``), its ``model/`` folder, or an experiment folder with one fold."""
    path = Path(path)
    if not path.exists():
        raise BiosegError(f"run folder {path} does not exist; train one with 'bioseg train exp.yaml'")
    candidates = [path, path / MODEL_DIR]
    folds = sorted(path.glob(f"fold_*/{MODEL_DIR}"))
    if len(folds) == 1:
        candidates.append(folds[0])
    for c in candidates:
        if (c / META).is_file() and (c / WEIGHTS).is_file():
            return c
    hint = f" (it has {len(folds)} folds: give one, e.g. {folds[0].parent})" if len(folds) > 1 else ""
    raise BiosegError(
        f"{path} holds no trained model (expected {MODEL_DIR}/{META} and {MODEL_DIR}/{WEIGHTS}){hint}; "
        "training writes them when it finishes"
    )


def read_meta(model_dir: Path) -> dict[str, Any]:
    try:
        meta = json.loads((model_dir / META).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise BiosegError(f"{model_dir / META} cannot be read ({err}); re-export the model by training again") from None
    if meta.get("format") != "bioseg-model":
        raise BiosegError(f"{model_dir / META} is not a bioseg model description")
    return meta


def load_weights(net: torch.nn.Module, weights: Path) -> None:
    """Load safetensors into ``net``; a file from another architecture is a clear error."""
    try:
        state = load_file(str(weights))
    except Exception as err:  # safetensors raises several types for corrupt files
        raise BiosegError(f"{weights} is not a readable safetensors file ({err})") from None
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        detail = (
            f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} with another shape"
            f" (e.g. {(missing or unexpected or wrong)[0]})"
        )
        raise BiosegError(
            f"{weights} was saved from another model than model.json describes: {detail}; "
            "use the weights and model.json of the same run"
        )
    net.load_state_dict(state)
