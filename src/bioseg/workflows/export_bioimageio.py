"""A bioimage.io model package (spec 0.5): rdf.yaml, pytorch_state_dict (with a self-contained
architecture file), TorchScript and ONNX weights, test tensors, cover, README.

The input is the network's channels before normalisation; preprocessing reproduces the run's
normalisation (``scale_range`` at its percentiles per image and channel, or a fixed ``scale_linear``);
each head is one output holding its probabilities (the sigmoid or softmax is part of the network).
Nothing in the package points to the network: it validates and runs offline.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bioseg import __version__
from bioseg.errors import BiosegError
from bioseg.nn.bundle import ModelBundle, network_options
from bioseg.workflows import export_bioimageio_files as files_
from bioseg.workflows import export_model as em

FORMAT_VERSION = "0.5.12"
RDF = "rdf.yaml"
CITE = [{"text": "Ronneberger, Fischer and Brox: U-Net: Convolutional Networks for Biomedical Image "
                 "Segmentation, MICCAI 2015", "doi": "10.1007/978-3-319-24574-4_28"}]  # fmt: skip
WEIGHTS = {"pytorch_state_dict": "weights.pt", "torchscript": "model.torchscript.pt", "onnx": "model.onnx"}


def _axes(bundle: ModelBundle, channel_names: list[str], output: bool) -> list[dict[str, Any]]:
    """batch, channel, then (z,) y, x: inputs take ``min + n * step`` sizes (multiples of the network's
    divisor); outputs have the input's size and a halo of half the run's tile overlap."""
    axes: list[dict[str, Any]] = [{"type": "batch"}, {"type": "channel", "channel_names": channel_names}]
    tile, div = em.tile_size(bundle), em.size_divisor(bundle)
    names = "zyx"[3 - len(tile) :]
    for name, t, d in zip(names, tile, div, strict=True):
        halo = _halo(t, d, bundle.cfg.infer.overlap)
        if output:
            axes.append({"type": "space", "id": name, "halo": halo, "size": {"tensor_id": em.INPUT, "axis_id": name}})
        else:
            axes.append({"type": "space", "id": name, "size": {"min": _min_size(halo, d), "step": d}})
    return axes


def _halo(tile: int, divisor: int, overlap: float) -> int:
    return max(1, min(int(tile * overlap / 2), (tile - 1) // 2))


def _min_size(halo: int, divisor: int) -> int:
    """The smallest multiple of ``divisor`` that is larger than both halos."""
    return divisor * (2 * halo // divisor + 1)


def preprocessing(bundle: ModelBundle) -> list[dict[str, Any]]:
    """The run's normalisation as bioimage.io operations."""
    norm = bundle.cfg.data.normalization
    spatial = list("zyx"[3 - bundle.cfg.model.spatial_dims :])
    if norm.mode == "per_image":
        low, high = norm.percentiles
        return [{"id": "scale_range", "kwargs": {"axes": spatial, "min_percentile": low, "max_percentile": high,
                                                 "eps": 1e-6}}]  # fmt: skip
    if norm.mode == "dataset":
        lo, hi = np.asarray(norm.low, np.float64), np.asarray(norm.high, np.float64)
        gain = 1.0 / np.maximum(hi - lo, 1e-6)
        return [{"id": "scale_linear", "kwargs": {"axis": "channel", "gain": gain.tolist(),
                                                  "offset": (-lo * gain).tolist()}}]  # fmt: skip
    return []


def _tensors(bundle: ModelBundle, meta: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    channel_names = bundle.cfg.data.channel_names or [f"channel{i}" for i in range(bundle.cfg.data.in_channels)]
    if len(channel_names) != bundle.cfg.data.in_channels:
        channel_names = [f"channel{i}" for i in range(bundle.cfg.data.in_channels)]
    inputs = [{"id": em.INPUT, "description": "raw image (the run's channels), normalised by the preprocessing",
               "axes": _axes(bundle, channel_names, output=False), "test_tensor": {"source": "test_input.npy"},
               "data": {"type": "float32"}, "preprocessing": preprocessing(bundle)}]  # fmt: skip
    outputs = []
    for name, head in meta["heads"].items():
        labels = (["foreground"] if head["channels"] == 1
                  else (bundle.cfg.data.classes if head["channels"] == len(bundle.cfg.data.classes)
                        else [f"class{i}" for i in range(head["channels"])]))  # fmt: skip
        outputs.append({"id": name, "description": f"{head['type']} head, probabilities after {head['activation']}",
                        "axes": _axes(bundle, labels, output=True), "test_tensor": {"source": f"test_{name}.npy"},
                        "data": {"type": "float32", "range": [0.0, 1.0]}})  # fmt: skip
    return inputs, outputs


def _weights(bundle: ModelBundle, model: em.ProbabilityNet, folder: Path, exported: dict[str, Path]) -> dict:
    """Copies of the exported weights, and the state dict with its architecture file where the network
    is bioseg's UNet (other networks have no self-contained source: TorchScript is their root)."""
    torch_version = torch.__version__.split("+")[0]
    weights: dict[str, Any] = {}
    root = None
    if bundle.cfg.model.name == "unet":
        torch.save(model.state_dict(), folder / WEIGHTS["pytorch_state_dict"])
        (folder / "architecture.py").write_text(files_.architecture_source())
        kwargs = {"spatial_dims": bundle.cfg.model.spatial_dims, "in_channels": bundle.cfg.data.in_channels,
                  "heads": dict(bundle.net.heads), "head_types": dict(model.head_types),
                  "options": network_options(bundle.cfg, for_training=False)}  # fmt: skip
        weights["pytorch_state_dict"] = {
            "source": WEIGHTS["pytorch_state_dict"], "pytorch_version": torch_version,
            "architecture": {"source": "architecture.py", "callable": files_.ARCHITECTURE_CALLABLE, "kwargs": kwargs},
        }  # fmt: skip
        root = "pytorch_state_dict"
    shutil.copyfile(exported["torchscript"], folder / WEIGHTS["torchscript"])
    weights["torchscript"] = {"source": WEIGHTS["torchscript"], "pytorch_version": torch_version}
    if root:
        weights["torchscript"]["parent"] = root
    shutil.copyfile(exported["onnx"], folder / WEIGHTS["onnx"])
    from bioseg.workflows.export_onnx import OPSET

    weights["onnx"] = {"source": WEIGHTS["onnx"], "opset_version": OPSET, "parent": root or "torchscript"}
    return weights


def _test_tensors(bundle: ModelBundle, model: em.ProbabilityNet, raw: np.ndarray, folder: Path) -> np.ndarray:
    """test_input.npy (one raw tile) and test_<head>.npy (the network on it, normalised as the
    preprocessing does: per tile for per-image normalisation); returns the first head's output."""
    from bioseg.data.preprocess import normalize, select_channels

    data = bundle.cfg.data
    region = tuple(slice(0, t) for t in em.tile_size(bundle))
    tile = select_channels(raw[(slice(None), *region)], data.channels, data.in_channels, "example")
    tile = np.ascontiguousarray(tile, dtype=np.float32)
    norm = bundle.cfg.data.normalization
    x = normalize(tile, norm.mode, norm.percentiles, norm.low, norm.high)
    with torch.inference_mode():
        outs = [t.numpy() for t in model(torch.from_numpy(np.ascontiguousarray(x[None], dtype=np.float32)))]
    np.save(folder / "test_input.npy", tile[None])
    for name, out in zip(model.head_types, outs, strict=True):
        np.save(folder / f"test_{name}.npy", out)
    _cover(bundle, raw, folder / "cover.png")
    return outs[0]


def _cover(bundle: ModelBundle, raw: np.ndarray, path: Path) -> Path:
    """The first head's foreground on (a corner of at most 256² or two tiles of) the example image, as
    ``bioseg predict`` predicts it."""
    from bioseg.data.preprocess import select_channels
    from bioseg.inference.predictor import Predictor

    tile = em.tile_size(bundle)
    limit = [t if axis < len(tile) - 2 else max(2 * t, 256) for axis, t in enumerate(tile)]
    crop = raw[(slice(None), *(slice(0, n) for n in limit))]
    prediction = Predictor(bundle.net, bundle.cfg, precision="fp32").predict(crop, "example")
    shown = select_channels(crop, bundle.cfg.data.channels, bundle.cfg.data.in_channels, "example")
    return files_.cover(shown, prediction.probabilities[next(iter(bundle.cfg.heads))], path)


def rdf(bundle: ModelBundle, meta: dict[str, Any], weights: dict[str, Any]) -> dict[str, Any]:
    cfg = bundle.cfg
    inputs, outputs = _tensors(bundle, meta)
    return {
        "type": "model", "format_version": FORMAT_VERSION, "name": _name(cfg.name),
        "description": f"{cfg.model.spatial_dims}D {cfg.model.name} segmentation ({', '.join(cfg.data.classes)}); "
                       f"heads {', '.join(cfg.heads)}; trained with bioseg {__version__}",
        "authors": [{"name": "bioseg"}], "cite": CITE, "license": "MIT",
        "documentation": {"source": "README.md"}, "covers": [{"source": "cover.png"}],
        "tags": ["segmentation", f"{cfg.model.spatial_dims}d", "unet", "bioseg"],
        "inputs": inputs, "outputs": outputs, "weights": weights,
        "config": {"bioseg": meta},
    }  # fmt: skip


def check_exportable(bundle: ModelBundle) -> None:
    """BiosegError where the package could not reproduce the run's input: a channel spec beyond a plain
    selection mixes channels after normalisation, which bioimage.io preprocessing cannot express."""
    from bioseg.data.dataset import channel_mapper

    if channel_mapper(bundle.cfg.data) is not None:
        raise BiosegError(
            f"the run's channel spec {bundle.cfg.data.channels} mixes channels after normalisation, which "
            "bioimage.io preprocessing cannot express; export --format onnx,torchscript (their metadata carry it)"
        )


def _name(name: str) -> str:
    """The run's name as bioimage.io takes it: no slash, at least 5 characters."""
    name = name.replace("/", "-")
    return name if len(name) >= 5 else f"bioseg {name}"


def write_package(
    bundle: ModelBundle, model: em.ProbabilityNet, raw: np.ndarray, exported: dict[str, Path], folder: Path
) -> Path:
    """Write the package into ``folder`` (created); ``exported``: the ONNX and TorchScript files."""
    import yaml

    check_exportable(bundle)
    folder.mkdir(parents=True)
    meta = em.metadata(bundle)
    weights = _weights(bundle, model, folder, exported)
    _test_tensors(bundle, model, raw, folder)
    (folder / "README.md").write_text(files_.readme(bundle, meta, CITE))
    (folder / RDF).write_text(yaml.safe_dump(rdf(bundle, meta, weights), sort_keys=False))
    return folder


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """bioimage.io's libraries without network: they check local files only, and keep quiet."""
    from bioimageio.spec._internal._settings import settings
    from loguru import logger

    before = settings.perform_io_checks
    settings.perform_io_checks = False  # remote checks off; local files are still read and hashed on use
    logger.disable("bioimageio")
    try:
        yield
    finally:
        settings.perform_io_checks = before
        logger.enable("bioimageio")


def check_package(folder: Path) -> tuple[list[str], list[str]]:
    """bioimageio.core's ``test_model`` per weight format: (one line per failure, one per pass)."""
    from bioimageio.core import test_model

    problems, passed = [], []
    with offline():
        for fmt in _formats(folder):
            summary = test_model(folder / RDF, weight_format=fmt, devices=["cpu"])
            if summary.status == "passed":
                passed.append(f"bioimageio: test_model {fmt} passed")
                continue
            failed = [d for d in summary.details if d.status == "failed"]
            why = "; ".join(f"{d.name}: {_first_error(d)}" for d in failed[:2])
            problems.append(f"bioimageio: test_model {fmt} {summary.status}: {why or 'see bioimageio test-model'}")
    return problems, passed


def _first_error(detail: Any) -> str:
    if not detail.errors:
        return ""
    error = detail.errors[0]
    message = " ".join(error.msg.split())  # one line
    return f"{'.'.join(map(str, error.loc))}: {message}"[:240]


def _formats(folder: Path) -> list[str]:
    import yaml

    try:
        return list(yaml.safe_load((folder / RDF).read_text())["weights"])
    except (OSError, KeyError, TypeError, yaml.YAMLError) as err:
        raise BiosegError(f"{folder / RDF} cannot be read ({err})") from None
