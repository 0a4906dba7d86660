"""Initialise a network from another run's weights, adapting the convolution that reads the image.

A user fine-tunes a model trained on 1-channel images on 2-channel stacks (or RGB → grayscale, …):
every tensor whose key and shape match is copied, the input convolution is adapted to the new number of
channels (see :func:`adapt_input_channels` for the rule), heads whose output count changed keep the new
model's initialisation, and a :class:`TransferReport` says which tensor went where.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from bioseg.errors import BiosegError
from bioseg.nn.bundle import MODEL_DIR as _MODEL_DIR
from bioseg.nn.bundle import WEIGHTS as _WEIGHTS
from bioseg.nn.unet import UNet

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)

NOT_IN_MODEL = "not in the model"
NOT_IN_SOURCE = "not in the source (keeps the model's initialisation)"


@dataclass
class TransferReport:
    """What :func:`transfer_weights` did with each tensor.

    ``loaded``: model keys copied from the source unchanged. ``adapted``: input-convolution weights
    converted to another number of input channels. ``skipped``: key → reason, for model keys that kept
    their initialisation (other shape, absent from the source) and source keys the model lacks.
    ``input_channels``: ``(source, model)`` input channels of the adapted convolution(s), if any.
    """

    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    input_channels: tuple[int, int] | None = None

    def summary(self) -> str:
        """One line, e.g. ``loaded 52 tensors, adapted 1 (first conv: 1 → 2 input channels), skipped 2
        (heads)``."""
        parts = [f"loaded {len(self.loaded)} tensors"]
        if self.adapted:
            what = "first conv" if len(self.adapted) == 1 else f"{len(self.adapted)} input convs"
            src, dst = self.input_channels or ("?", "?")
            parts.append(f"adapted {len(self.adapted)} ({what}: {src} → {dst} input channels)")
        else:
            parts.append("adapted 0")
        groups: dict[str, int] = {}
        for key, reason in self.skipped.items():
            label = _skip_group(key, reason)
            groups[label] = groups.get(label, 0) + 1
        if len(groups) == 1:
            parts.append(f"skipped {len(self.skipped)} ({next(iter(groups))})")
        elif groups:
            detail = ", ".join(f"{label}: {n}" for label, n in groups.items())
            parts.append(f"skipped {len(self.skipped)} ({detail})")
        else:
            parts.append("skipped 0")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the report, its summary line included."""
        d = asdict(self)
        d["input_channels"] = list(self.input_channels) if self.input_channels else None
        d["summary"] = self.summary()
        return d


def _skip_group(key: str, reason: str) -> str:
    """Short label for the summary: heads together, other keys by why they were skipped."""
    if "head" in key.split(".", 1)[0]:
        return "heads"
    if reason == NOT_IN_MODEL:
        return "not in model"
    if reason == NOT_IN_SOURCE:
        return "not in source"
    return "other shape"


# ----------------------------------------------------------------------------------------------------------
# Reading weights


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors saved at ``path``, on the CPU, keyed as in the network's ``state_dict()``.

    ``path`` may be a run folder (``…/fold_0``), its ``model/`` folder, an experiment folder with a single
    fold, a ``.safetensors`` file, or a PyTorch file (Lightning ``.ckpt``, ``.pt``, ``.pth``): its
    ``state_dict`` (or the file itself if it is a state dict), with the ``net.`` prefix that the training
    module adds stripped and the module's other tensors (loss buffers, …) left out. PyTorch files are read
    with ``weights_only=True``, so a file cannot run code. Missing or unreadable files raise BiosegError
    naming them.
    """
    path = Path(path)
    if not path.exists():
        raise BiosegError(
            f"{path} does not exist; give a run folder (…/fold_0), its model/ folder, a .safetensors file "
            "or a Lightning .ckpt"
        )
    if path.is_dir():
        path = _weights_in_folder(path)
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as err:  # safetensors raises several types for corrupt files
            raise BiosegError(f"{path} is not a readable safetensors file ({err})") from None
    return _read_torch_file(path)


def _weights_in_folder(folder: Path) -> Path:
    candidates = [folder / _WEIGHTS, folder / _MODEL_DIR / _WEIGHTS]
    folds = sorted(folder.glob(f"fold_*/{_MODEL_DIR}/{_WEIGHTS}"))
    if len(folds) == 1:
        candidates.append(folds[0])
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    if len(folds) > 1:
        hint = f"; it has {len(folds)} folds: give one, e.g. {folds[0].parent.parent}"
    elif (folder / "checkpoints" / "last.ckpt").is_file():
        hint = (
            f"; its training did not finish: give {folder / 'checkpoints' / 'last.ckpt'} to start from "
            "the last checkpoint"
        )
    else:
        hint = "; give a run folder (…/fold_0), its model/ folder, a .safetensors file or a .ckpt"
    raise BiosegError(f"{folder} holds no weights (expected {_MODEL_DIR}/{_WEIGHTS}){hint}")


def _read_torch_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, … for foreign files
        text = str(err)
        found = re.search(r"GLOBAL (\S+)", text)
        if isinstance(err, pickle.UnpicklingError) and found:
            raise BiosegError(
                f"{path} holds Python objects besides tensors ({found.group(1)}), which would run code when "
                "loaded; if you trust the file, re-save its weights: torch.save(torch.load(path, "
                "weights_only=False)['state_dict'], 'weights.pt'), and give weights.pt"
            ) from None
        detail = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n|$)", text)
        lines = text.strip().splitlines()
        reason = detail.group(1) if detail else lines[0] if lines else type(err).__name__
        raise BiosegError(f"{path} is not a readable PyTorch checkpoint ({reason})") from None
    return state_from_checkpoint(obj, str(path))


def state_from_checkpoint(obj: Any, name: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The network's tensors in a loaded checkpoint: ``obj["state_dict"]`` (Lightning), or
    ``obj["model_state_dict"]``, or ``obj`` itself; keys under ``net.`` (the training module's network)
    are kept with the prefix stripped, and a ``module.`` prefix on every key (DataParallel) is dropped."""
    state = obj
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                state = obj[key]
                break
    tensors = (
        {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
        if isinstance(state, Mapping) else {}
    )
    if not tensors:
        found = f"keys {sorted(map(str, obj))[:8]}" if isinstance(obj, Mapping) else type(obj).__name__
        raise BiosegError(
            f"{name} holds no tensors (found {found}); expected a Lightning checkpoint with a state_dict, "
            "or a state dict saved with torch.save(model.state_dict(), path)"
        )
    net = {k.removeprefix("net."): v for k, v in tensors.items() if k.startswith("net.")}
    tensors = net or tensors
    if all(k.startswith("module.") for k in tensors):
        tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    return tensors


# ----------------------------------------------------------------------------------------------------------
# Adapting and transferring


def adapt_input_channels(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """A convolution weight ``(O, S, *kernel)`` converted to ``(O, channels, *kernel)`` input channels.

    Rule, with S source channels and T = ``channels`` target channels: the filters over all target
    channels sum to the filters over all source channels, so an image whose T channels all equal one
    image x gives the activations the source gave for its S channels all equal to x (for S = 1: the
    source's activations on x). Inputs of similar intensity keep activations of similar magnitude.

    - T ≥ S: source channel c stays channel c, and each new channel gets the mean of the source filters;
      then every filter is scaled by S / T. (1 → 2: both channels get W / 2.)
    - T < S: no source channel can be matched to one target channel, so every target channel gets the
      mean of the source filters scaled by S / T, i.e. their sum divided by T. (3 → 1: the sum.)
    """
    if weight.dim() < 3:
        raise BiosegError(f"expected a convolution weight (O, C, *kernel); got shape {tuple(weight.shape)}")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise BiosegError(f"channels is {channels!r}; it must be an integer ≥ 1")
    w = weight.float()
    src = w.shape[1]
    mean = w.mean(dim=1, keepdim=True)
    if channels >= src:
        new = mean.expand(-1, channels - src, *w.shape[2:])
        out = torch.cat([w, new], dim=1)
    else:
        out = mean.expand(-1, channels, *w.shape[2:])
    return (out * (src / channels)).to(weight.dtype).contiguous()


def input_conv_keys(model: nn.Module) -> list[str]:
    """State-dict keys of the weights of the convolutions that read the image.

    For the UNet: the first encoder's first convolution, and its 1×1 residual projection when it has
    one (it reads the image too). Otherwise the first convolution in registration (= ``state_dict``)
    order.
    """
    if isinstance(model, UNet):
        block = model.encoders[0]
        keys = ["encoders.0.conv1.weight"]
        if isinstance(block.skip, _CONVS):
            keys.append("encoders.0.skip.weight")
        return keys
    for name, module in model.named_modules():
        if isinstance(module, _CONVS):
            return [f"{name}.weight" if name else "weight"]
    return []


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


def _merge_matching(
    target: Mapping[str, torch.Tensor],
    source: Mapping[str, torch.Tensor],
    inputs: set[str],
    report: TransferReport,
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``target`` with every matching ``source`` tensor copied in (and input convolutions adapted), cast
    to the target's dtype and device; what happened to each key goes into ``report``. Also returns the
    keys whose shapes differ."""
    merged = dict(target)
    mismatched: list[str] = []
    for key, t in target.items():
        if key not in source:
            report.skipped[key] = NOT_IN_SOURCE
            continue
        s = source[key]
        if s.shape == t.shape:
            merged[key] = s.detach().to(device=t.device, dtype=t.dtype)
            report.loaded.append(key)
        elif (
            key in inputs and s.dim() == t.dim() and s.shape[0] == t.shape[0] and s.shape[2:] == t.shape[2:]
        ):
            adapted = adapt_input_channels(s.detach().float(), int(t.shape[1]))
            merged[key] = adapted.to(device=t.device, dtype=t.dtype)
            report.adapted.append(key)
            report.input_channels = report.input_channels or (int(s.shape[1]), int(t.shape[1]))
        else:
            report.skipped[key] = f"shape {_shape(s)} vs {_shape(t)}"
            mismatched.append(key)
    for key in source:
        if key not in target:
            report.skipped[key] = NOT_IN_MODEL
    return merged, mismatched


def transfer_weights(
    model: nn.Module, source: Mapping[str, torch.Tensor], *, strict_shapes: bool = False
) -> TransferReport:
    """Load into ``model`` (in place) every tensor of ``source`` whose key and shape match.

    The input convolution(s) (:func:`input_conv_keys`) whose shapes differ only in the input-channel
    dimension (dim 1) are adapted with :func:`adapt_input_channels`. Tensors of another shape (e.g. a head
    with another number of outputs) keep the model's initialisation and are reported as skipped with
    reason ``"shape (source shape) vs (model shape)"``; so are keys absent from either side.
    ``strict_shapes=True`` makes any such shape mismatch a BiosegError instead. A source that shares no
    tensor with the model (e.g. 2D weights for a 3D model) is a BiosegError. Tensors are cast to the
    model's dtype and device.
    """
    if not isinstance(source, Mapping) or not all(isinstance(v, torch.Tensor) for v in source.values()):
        raise BiosegError(
            "source must map state-dict keys to tensors; read one with bioseg.nn.transfer.read_state(path)"
        )
    target = model.state_dict()
    report = TransferReport()
    merged, mismatched = _merge_matching(target, source, set(input_conv_keys(model)), report)
    if strict_shapes and mismatched:
        listed = "; ".join(f"{k}: {report.skipped[k]}" for k in mismatched[:5])
        more = f" and {len(mismatched) - 5} more" if len(mismatched) > 5 else ""
        raise BiosegError(
            f"{len(mismatched)} tensors have another shape in the source than in the model ({listed}{more}); "
            "use the same architecture and heads, or strict_shapes=False to keep those at their "
            "initialisation"
        )
    # Norm parameters alone can match by chance (2D vs 3D weights): demand a multi-dim tensor.
    if not any(target[k].dim() > 1 for k in report.loaded + report.adapted):
        example = next((k for k, v in target.items() if v.dim() > 1), "?")
        raise BiosegError(
            f"the source shares no layer weights with the model (model key {example!r}: "
            f"{report.skipped.get(example, 'absent')}); the weights come from another architecture "
            "(2D vs 3D, other widths?): start from weights of the same model"
        )
    model.load_state_dict(merged, strict=True)
    return report
