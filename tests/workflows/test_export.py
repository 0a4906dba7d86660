"""bioseg.export: formats, the output folder written only when complete, refusals in one line."""

import copy
import json

import pytest
import torch

from bioseg.errors import BiosegError
from bioseg.workflows import export_torchscript
from bioseg.workflows.export import export_run, parse_formats


def test_formats_default_to_all_three_and_keep_their_order():
    assert parse_formats(None) == ["onnx", "torchscript", "bioimageio"]
    assert parse_formats("TorchScript, onnx") == ["onnx", "torchscript"]
    with pytest.raises(BiosegError, match="'tflite' is unknown; choose from onnx, torchscript, bioimageio"):
        parse_formats("onnx,tflite")


def test_all_formats_are_written_beside_the_metadata(exported):
    names = {p.name for p in exported["2d"].iterdir()}
    assert names == {"model.onnx", "model.torchscript.pt", "bioimageio", "metadata.json", "validation.json"}
    assert not list(exported["2d"].parent.glob("*.tmp-*"))


def test_an_existing_output_is_kept_unless_forced(run_3d, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(BiosegError, match="exists; choose another output folder or add --force"):
        export_run(run_3d, out, "onnx")
    assert (out / "mine.txt").is_file()
    result = export_run(run_3d, out, "onnx", force=True)
    assert {p.name for p in out.iterdir()} == {"model.onnx", "metadata.json"} and result.files["onnx"].is_file()


def test_a_failed_check_leaves_no_output_and_says_which_check_failed(run_3d, tmp_path, monkeypatch):
    trace = export_torchscript.trace

    def wrong_trace(model, example):  # a TorchScript file that is not the network
        other = copy.deepcopy(model)
        with torch.no_grad():
            next(other.parameters()).add_(1.0)
        return trace(other, example)

    monkeypatch.setattr(export_torchscript, "trace", wrong_trace)
    with pytest.raises(BiosegError) as caught:
        export_run(run_3d, tmp_path / "out", "onnx,torchscript", validate=True)
    lines = str(caught.value).splitlines()
    assert lines[0] == "2 export check(s) failed, nothing was written:"
    assert all(line.startswith("torchscript: head 'mask' at input (") for line in lines[1:])
    assert list(tmp_path.iterdir()) == []


def test_a_missing_package_names_the_extra(run_3d, tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "onnxruntime" else find_spec(name))
    with pytest.raises(BiosegError, match=r"^export needs onnxruntime: .*pip install 'bioseg\[export\]'$"):
        export_run(run_3d, tmp_path / "out", "torchscript", validate=True)
    assert list(tmp_path.iterdir()) == []


def test_the_package_alone_keeps_no_copies_beside_it(run_multihead, tmp_path):
    result = export_run(run_multihead, tmp_path / "out", "bioimageio")
    assert {p.name for p in result.out_dir.iterdir()} == {"bioimageio", "metadata.json"}
    assert (result.out_dir / "bioimageio" / "model.onnx").is_file()


def test_the_benchmark_times_every_runtime_on_the_same_batch(run_3d, tmp_path, monkeypatch):
    from bioseg.inference.precision import NATIVE_BF16_FLAGS, cpu_flags
    from bioseg.workflows import export_benchmark

    monkeypatch.setattr(export_benchmark, "ROUNDS", 1)
    monkeypatch.setattr(export_benchmark, "MIN_SECONDS", 0.01)
    result = export_run(run_3d, tmp_path / "out", "onnx,torchscript", benchmark=True)
    saved = json.loads((result.out_dir / "benchmark.json").read_text())
    expected = {"pytorch fp32", "pytorch predictor fp32", "torchscript fp32", "onnxruntime fp32"}
    if cpu_flags() & NATIVE_BF16_FLAGS:
        expected |= {"pytorch bf16", "pytorch predictor bf16", "torchscript bf16"}
    assert set(saved["runtimes"]) == expected and saved["batch"] == [4, 1, 8, 32, 32]
    assert all(r["tiles_per_second"] > 0 for r in saved["runtimes"].values())
    assert "| onnxruntime fp32 |" in (result.out_dir / "benchmark.md").read_text()


def test_export_needs_the_model_folder_and_inference_only():
    """Per the layers: an export reads nn/bundle and inference (and what is below), never the training."""
    import ast
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "src" / "bioseg"
    for path in sorted((src / "workflows").glob("export*.py")):
        tree = ast.parse(path.read_text())
        modules = {n.module if n.module != "bioseg.workflows" else f"{n.module}.{a.name}"
                   for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module for a in n.names}  # fmt: skip
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        ours = {m for m in modules if m.startswith("bioseg.")}
        allowed = ("bioseg.nn", "bioseg.inference", "bioseg.data", "bioseg.config", "bioseg.io", "bioseg.errors",
                   "bioseg.workflows.export")  # fmt: skip
        assert all(m.startswith(allowed) for m in ours), (path.name, ours)
        assert not modules & {"lightning", "bioseg.engine", "bioseg.reports"}, path.name


def test_a_channel_merge_is_refused_for_the_package_before_anything_is_written(tmp_path):
    from helpers import saved_run

    run = saved_run(tmp_path / "merge", {
        "data": {"root": str(tmp_path / "absent"), "patch_size": [16, 16], "channels": [{"merge": [0, 1]}]},
        "model": {"widths": [4, 8]},
    })  # fmt: skip
    with pytest.raises(BiosegError, match=r"channel spec .* bioimage.io preprocessing cannot express; export --forma"):
        export_run(run, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merge"]
