"""``bioseg export``: a trained run as ONNX, TorchScript and a bioimage.io package, optionally checked
against PyTorch and timed.

Everything is written into ``OUT.tmp-<pid>`` beside ``OUT`` and renamed to ``OUT`` only when every
export (and, with ``validate``, every check) succeeded: a folder named ``OUT`` is always complete.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bioseg.errors import BiosegError
from bioseg.nn.bundle import ModelBundle
from bioseg.workflows import export_model as em

FORMATS = ("onnx", "torchscript", "bioimageio")
FILES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt", "bioimageio": "bioimageio"}
#: python modules each part needs (all from ``bioseg[export]``)
NEEDS = {
    "onnx": ("onnx", "onnxscript"),
    "bioimageio": ("onnx", "onnxscript", "bioimageio.spec", "bioimageio.core"),
    "validate": ("onnx", "onnxruntime"),
    "benchmark": ("onnxruntime",),
}


@dataclass
class ExportResult:
    out_dir: Path
    files: dict[str, Path]  # format → file or folder in out_dir
    checks: list[str] = field(default_factory=list)  # what --validate checked, each passed
    benchmark: dict[str, Any] | None = None


def parse_formats(formats: str | Sequence[str] | None) -> list[str]:
    """``"onnx,torchscript"`` or a list → the formats, in the order of :data:`FORMATS`."""
    if formats is None:
        return list(FORMATS)
    names = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats)]
    unknown = [f for f in names if f not in FORMATS]
    if unknown or not names:
        raise BiosegError(f"export format {unknown[0] if unknown else '(none)'!r} is unknown; "
                          f"choose from {', '.join(FORMATS)} (comma-separated)")  # fmt: skip
    return [f for f in FORMATS if f in names]


def require_extra(parts: Sequence[str]) -> None:
    """One line naming the extra to install when a module that ``parts`` need is missing."""
    missing = sorted({m for p in parts for m in NEEDS.get(p, ()) if importlib.util.find_spec(m.split(".")[0]) is None
                      or importlib.util.find_spec(m) is None})  # fmt: skip
    if missing:
        raise BiosegError(f"export needs {', '.join(missing)}: install the export extra, pip install 'bioseg[export]'")


def export_run(
    run: str | Path, out: str | Path, formats: str | Sequence[str] | None = None, *,
    validate: bool = False, benchmark: bool = False, force: bool = False,
) -> ExportResult:  # fmt: skip
    """Export the model of ``run`` (a run folder, its ``model/`` or a one-fold experiment folder) into the
    folder ``out``: ``model.onnx``, ``model.torchscript.pt``, ``bioimageio/`` (a bioimage.io package) and
    ``metadata.json``. ``validate``: check each format against PyTorch (see :mod:`.export_model`), a
    failure raises BiosegError with one line per failed check and leaves no ``out``. ``benchmark``: tiles
    per second per runtime into ``benchmark.json`` and ``benchmark.md``. An existing ``out`` is replaced
    only with ``force``."""
    chosen = parse_formats(formats)
    require_extra([*chosen, *(["validate"] if validate else []), *(["benchmark"] if benchmark else [])])
    out = Path(out)
    if out.exists() and not force:
        raise BiosegError(f"{out} exists; choose another output folder or add --force to replace it")
    bundle = ModelBundle.load(run)
    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        result = _export_into(bundle, tmp, chosen, validate, benchmark)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _replace(tmp, out)
    result.out_dir = out
    result.files = {k: out / v.relative_to(tmp) for k, v in result.files.items()}
    return result


def _export_into(bundle: ModelBundle, folder: Path, formats: list[str], validate: bool, bench: bool) -> ExportResult:
    if "bioimageio" in formats:
        from bioseg.workflows.export_bioimageio import check_exportable

        check_exportable(bundle)
    model = em.probability_net(bundle)
    meta = em.metadata(bundle)
    raw = em.example_image(bundle)
    example = em.example_tile(bundle, raw)
    em.write_json(folder / "metadata.json", meta)
    files: dict[str, Path] = {}
    if "onnx" in formats or "bioimageio" in formats:
        from bioseg.workflows.export_onnx import write_onnx

        files["onnx"] = write_onnx(model, example, em.size_divisor(bundle), meta, folder / FILES["onnx"])
    if "torchscript" in formats or "bioimageio" in formats:
        from bioseg.workflows.export_torchscript import write_torchscript

        files["torchscript"] = write_torchscript(model, example, meta, folder / FILES["torchscript"])
    if "bioimageio" in formats:
        from bioseg.workflows.export_bioimageio import write_package

        files["bioimageio"] = write_package(bundle, model, raw, files, folder / FILES["bioimageio"])
    for name in [k for k in files if k not in formats]:  # made only for the package, which holds a copy
        files.pop(name).unlink()
    result = ExportResult(folder, files)
    if validate:
        result.checks = _validate(bundle, model, files)
        em.write_json(folder / "validation.json", {"passed": result.checks})
    if bench:
        from bioseg.workflows.export_benchmark import benchmark_exports

        result.benchmark = benchmark_exports(model, example, files, folder)
    return result


def _validate(bundle: ModelBundle, model: em.ProbabilityNet, files: dict[str, Path]) -> list[str]:
    """Every check of every exported format; BiosegError with one line per failed check."""
    shapes = em.check_sizes(bundle)
    problems: list[str] = []
    passed: list[str] = []
    if "onnx" in files:
        from bioseg.workflows.export_onnx import check_onnx

        found = check_onnx(files["onnx"], model, shapes)
        problems += found
        passed += [] if found else [f"onnx: onnx.checker, onnxruntime = PyTorch within {em.TOLERANCE:g} at {shapes}"]
    if "torchscript" in files:
        from bioseg.workflows.export_torchscript import check_torchscript

        found = check_torchscript(files["torchscript"], model, shapes)
        problems += found
        passed += [] if found else [f"torchscript: = PyTorch within {em.TOLERANCE:g} at {shapes}"]
    if "bioimageio" in files:
        from bioseg.workflows.export_bioimageio import check_package

        found, ok = check_package(files["bioimageio"])
        problems += found
        passed += ok
    if problems:
        raise BiosegError(f"{len(problems)} export check(s) failed, nothing was written:\n" + "\n".join(problems))
    return passed


def _replace(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` (allowed by --force) goes only once ``tmp`` is ready."""
    old = None
    if out.exists() or out.is_symlink():
        old = out.parent / f"{out.name}.old-{os.getpid()}"
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
