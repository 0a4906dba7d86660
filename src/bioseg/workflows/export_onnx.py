"""ONNX export: dynamic batch and spatial axes (multiples of the network's size divisor), one output per
head holding its probabilities, the run's settings as JSON in the model's ``metadata_props``.

The graph comes from torch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``, onnxscript), the
one torch 2.13 maintains: each spatial axis is declared as ``divisor * n`` (a derived dimension), which
is what lets the pooling network's shape checks hold for every size, so one graph serves every batch
and tile size the network accepts.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bioseg.workflows.export_model import INPUT, ProbabilityNet, compare

METADATA_KEY = "bioseg"
OPSET = 18


def dynamic_shapes(divisor: Sequence[int]) -> dict[str, dict[int, Any]]:
    """Batch and spatial axes of the input as torch.export dimensions: axis ``i`` is ``divisor[i] * n_i``."""
    from torch.export import Dim

    axes: dict[int, Any] = {0: Dim("batch", min=1, max=4096)}
    for i, d in enumerate(divisor):
        n = Dim("zyx"[3 - len(divisor) + i], min=1, max=65536 // d)
        axes[2 + i] = n * d if d > 1 else n
    return {"x": axes}


def write_onnx(
    model: ProbabilityNet, example: np.ndarray, divisor: Sequence[int], meta: dict[str, Any], path: Path
) -> Path:
    """Export ``model`` (traced at ``example``, ``(N, C, *spatial)``) to ``path`` with ``meta`` attached."""
    import onnx

    heads = list(model.head_types)
    quiet = contextlib.redirect_stdout(io.StringIO())
    with quiet, warnings.catch_warnings(), _quiet_loggers():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.from_numpy(example),), str(path), dynamo=True, input_names=[INPUT], output_names=heads,
            dynamic_shapes=dynamic_shapes(divisor), opset_version=OPSET, external_data=False, verbose=False,
        )  # fmt: skip
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    proto.doc_string = f"bioseg model '{meta.get('name')}': probabilities per head ({', '.join(heads)})"
    onnx.save(proto, str(path))
    return path


@contextlib.contextmanager
def _quiet_loggers():
    """The exporter logs its progress and torchvision's absence at WARNING: not news to our users."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def read_metadata(path: Path) -> dict[str, Any]:
    """The bioseg settings stored in an exported ONNX file."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props[METADATA_KEY])


def session(path: Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session for ``path``."""
    import onnxruntime as ort

    ort.disable_telemetry_events()  # a no-op except where onnxruntime reports usage (Windows builds)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_onnx(path: Path, model: ProbabilityNet, shapes: Sequence[tuple[int, ...]]) -> list[str]:
    """onnx.checker, then onnxruntime against PyTorch at ``shapes``: one line per failed check."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as err:  # the checker raises its own ValidationError and others
        return [f"onnx: {path.name} fails onnx.checker: {str(err).splitlines()[0][:200]}"]
    try:
        sess = session(path)
    except Exception as err:
        return [f"onnx: onnxruntime cannot load {path.name}: {str(err).splitlines()[0][:200]}"]
    names = [o.name for o in sess.get_outputs()]
    if names != list(model.head_types):
        return [f"onnx: outputs are {names}; expected one per head {list(model.head_types)}"]
    return compare("onnx", lambda x: sess.run(None, {INPUT: x}), model, shapes, names)
