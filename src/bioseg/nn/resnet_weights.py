"""Loading ImageNet-style ResNet weights into a :class:`~bioseg.nn.resnet.ResNetEncoder`.

The only mapping needed is to drop the classifier (``fc.weight``, ``fc.bias``); a common prefix
(``encoder.``, ``backbone.``, …) is found and stripped, and ``num_batches_tracked`` buffers, which older
checkpoints lack, may be absent. A stem conv with another number of input channels is adapted. Weights
are only ever read from a local file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from bioseg.errors import BiosegError
from bioseg.nn.resnet import ResNetEncoder
from bioseg.nn.transfer import read_state

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")

_STEM = "conv1.weight"


@dataclass
class EncoderLoadReport:
    """What :func:`load_encoder_state` did with each tensor.

    ``loaded``: encoder keys copied unchanged. ``adapted``: the stem conv converted to another number of
    input channels (``input_channels`` = (file, model)). ``kept``: encoder keys the file lacks that may
    be absent (``num_batches_tracked``); they keep their initial value. ``ignored``: file key → why it
    was not used (the classifier ``fc.*``, tensors outside the encoder, norm statistics the chosen
    ``norm`` has no place for). ``prefix``: the prefix stripped from the file's keys.
    """

    source: str = ""
    prefix: str = ""
    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    ignored: dict[str, str] = field(default_factory=dict)
    input_channels: tuple[int, int] | None = None

    def summary(self) -> str:
        """One line, e.g. ``encoder weights from r18.pth: loaded 101 tensors, adapted conv1.weight (3 → 1
        input channels), ignored 2 (fc.bias, fc.weight)``."""
        parts = [f"loaded {len(self.loaded)} tensors"]
        if self.input_channels:
            src, dst = self.input_channels
            parts.append(f"adapted {', '.join(self.adapted)} ({src} → {dst} input channels)")
        if self.kept:
            parts.append(f"kept {len(self.kept)} at initialisation (num_batches_tracked)")
        if self.ignored:
            names = sorted(self.ignored)
            listed = ", ".join(names[:4]) + (f", … ({len(names) - 4} more)" if len(names) > 4 else "")
            parts.append(f"ignored {len(names)} ({listed})")
        where = f" from {self.source}" if self.source else ""
        prefix = f" (prefix '{self.prefix}' stripped)" if self.prefix else ""
        return f"encoder weights{where}{prefix}: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the report, its summary line included."""
        d = asdict(self)
        d["input_channels"] = list(self.input_channels) if self.input_channels else None
        d["summary"] = self.summary()
        return d


def read_encoder_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a local ResNet weight file: a state dict saved with ``torch.save`` (``.pth``, ``.pt``,
    ``.bin``; read with ``weights_only=True``, a ``state_dict``/``model_state_dict`` entry unwrapped) or a
    ``.safetensors`` file. Nothing is ever downloaded; a missing file is a BiosegError."""
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise BiosegError(
            f"encoder_weights {path} {what}; give a local ResNet weight file ({', '.join(WEIGHT_SUFFIXES)}), "
            "e.g. a torchvision or timm resnet18 state dict saved with torch.save(model.state_dict(), path); "
            "weights are never downloaded"
        )
    return read_state(path)


def find_encoder_prefix(state: Mapping[str, torch.Tensor]) -> str:
    """The prefix in front of the ResNet keys of ``state``: ``""`` for a torchvision/timm file,
    ``"encoder."`` for a ResUNet state dict, ``"backbone."`` etc. for others. BiosegError if no key
    ``<prefix>conv1.weight`` with a matching ``<prefix>layer1.0.conv1.weight`` exists."""
    candidates = [
        key[: -len(_STEM)] for key in state
        if key.endswith(_STEM) and (key == _STEM or key[: -len(_STEM)].endswith("."))
        and f"{key[: -len(_STEM)]}layer1.0.conv1.weight" in state
    ]
    if not candidates:
        sample = ", ".join(sorted(state)[:6])
        raise BiosegError(
            f"the weight file holds no ResNet (no 'conv1.weight' with 'layer1.0.conv1.weight' beside it; "
            f"found keys {sample}, …); give a torchvision- or timm-style resnet18/resnet34 state dict"
        )
    return min(candidates, key=len)


def adapt_stem_weight(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """The stem conv weight ``(O, S, kH, kW)`` for ``channels`` input channels: the mean of the S filters,
    repeated for every new channel and scaled by ``S / channels``.

    The filters then sum to those of the file, so an image whose channels all equal one grey image x
    gives exactly the activations the original network gives for x repeated over its S (RGB) channels.
    Unlike :func:`bioseg.nn.transfer.adapt_input_channels` no channel keeps the red filter: the channels
    of a microscope image have nothing to do with R, G, B.
    """
    if weight.dim() != 4:
        raise BiosegError(f"expected a 2D conv weight (O, C, kH, kW); got shape {tuple(weight.shape)}")
    w = weight.float()
    out = w.mean(dim=1, keepdim=True).expand(-1, channels, -1, -1) * (w.shape[1] / channels)
    return out.to(weight.dtype).contiguous()


def _wrong_resnet_hint(source: Mapping[str, torch.Tensor], depth: int) -> str:
    if "layer1.0.conv3.weight" in source:
        return "the file holds a bottleneck ResNet (ResNet-50 or deeper), which resunet does not support"
    file_depth = None
    if "layer1.1.conv1.weight" in source:
        file_depth = 34 if "layer3.5.conv1.weight" in source else 18
    if file_depth and file_depth != depth:
        return f"the file holds a ResNet-{file_depth}: set depth: {file_depth}"
    return "the file holds another architecture"


def load_encoder_state(
    encoder: ResNetEncoder, state: Mapping[str, torch.Tensor], source: str = ""
) -> EncoderLoadReport:
    """Load a torchvision/timm-style ResNet state dict into ``encoder`` (in place).

    Every encoder tensor must be in ``state`` with its shape; the exceptions are the stem conv
    ``conv1.weight`` with another number of input channels, which is adapted
    (:func:`adapt_stem_weight`), and ``num_batches_tracked``, which may be absent. Anything else missing
    or of another shape (another depth, a bottleneck ResNet) is a BiosegError: a half-loaded encoder
    would silently train from a broken start. Keys the encoder lacks (``fc.*``) are reported as ignored.
    """
    prefix = find_encoder_prefix(state)
    report = EncoderLoadReport(source=source, prefix=prefix)
    source_state = {}
    for key, value in state.items():
        if key.startswith(prefix):
            source_state[key[len(prefix):]] = value
        else:
            report.ignored[key] = "outside the encoder"
    target = encoder.state_dict()
    merged = dict(target)
    problems: list[str] = []
    for key, t in target.items():
        s = source_state.get(key)
        if s is None:
            if key.endswith("num_batches_tracked"):
                report.kept.append(key)
            else:
                problems.append(f"{key} missing")
        elif s.shape == t.shape:
            merged[key] = s.detach().to(dtype=t.dtype, device=t.device)
            report.loaded.append(key)
        elif key == _STEM and s.dim() == 4 and s.shape[0] == t.shape[0] and s.shape[2:] == t.shape[2:]:
            merged[key] = adapt_stem_weight(s.detach(), int(t.shape[1])).to(dtype=t.dtype, device=t.device)
            report.adapted.append(key)
            report.input_channels = (int(s.shape[1]), int(t.shape[1]))
        else:
            problems.append(f"{key} has shape {tuple(s.shape)}, expected {tuple(t.shape)}")
    if problems:
        listed = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
        raise BiosegError(
            f"encoder weights {source or ''} do not fit a ResNet-{encoder.depth} encoder ({listed}); "
            f"{_wrong_resnet_hint(source_state, encoder.depth)}"
        )
    for key in source_state:
        if key not in target:
            report.ignored[prefix + key] = (
                "classifier (not used for segmentation)" if key.startswith("fc.")
                else "not in the encoder (e.g. norm statistics the chosen norm does not keep)"
            )
    encoder.load_state_dict(merged, strict=True)
    return report
