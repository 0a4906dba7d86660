"""The bioimage.io package: valid offline, every weight format passes bioimageio.core's test."""

import ast
import json

import numpy as np
import pytest
import yaml

from bioseg.nn.bundle import ModelBundle
from bioseg.workflows.export_bioimageio import check_package, preprocessing
from bioseg.workflows.export_bioimageio_files import architecture_source


def _rdf(folder):
    return yaml.safe_load((folder / "bioimageio" / "rdf.yaml").read_text())


@pytest.mark.parametrize("kind", ["2d", "3d", "multihead"])
def test_every_weight_format_passed_bioimageio_test_model_offline(exported, kind):
    """The exports were validated with the network blocked (see the ``exported`` fixture)."""
    passed = json.loads((exported[kind] / "validation.json").read_text())["passed"]
    for fmt in ("pytorch_state_dict", "torchscript", "onnx"):
        assert f"bioimageio: test_model {fmt} passed" in passed


def test_a_broken_package_fails_in_one_line_per_weight_format(exported, tmp_path, no_network):
    import shutil

    folder = shutil.copytree(exported["2d"] / "bioimageio", tmp_path / "pkg")
    np.save(folder / "test_mask.npy", 1 - np.load(folder / "test_mask.npy"))
    problems, passed = check_package(folder)
    assert passed == [] and len(problems) == 3
    assert all(p.startswith("bioimageio: test_model ") and "\n" not in p for p in problems)


def test_the_package_holds_its_files_and_no_address(exported):
    folder = exported["multihead"] / "bioimageio"
    rdf = _rdf(exported["multihead"])
    text = (folder / "rdf.yaml").read_text()
    assert "http" not in text and "github_user" not in text
    for name in ("README.md", "cover.png", "architecture.py", "weights.pt", "model.onnx", "model.torchscript.pt",
                 "test_input.npy", "test_fg.npy", "test_cells.npy"):
        assert (folder / name).is_file(), name
    assert [o["id"] for o in rdf["outputs"]] == ["fg", "cells"]
    assert np.load(folder / "test_cells.npy").shape == (1, 3, 32, 32)
    assert rdf["weights"]["onnx"]["parent"] == "pytorch_state_dict"
    assert "## Validation" in (folder / "README.md").read_text()


def test_axes_take_multiples_of_the_divisor_and_outputs_have_a_halo(exported):
    rdf = _rdf(exported["3d"])
    z, y, x = rdf["inputs"][0]["axes"][2:]
    assert z["size"]["step"] == 1 and y["size"]["step"] == 2 and x["size"]["step"] == 2
    assert all(a["size"]["min"] > 2 * h["halo"] for a, h in zip((z, y, x), rdf["outputs"][0]["axes"][2:], strict=True))


def test_preprocessing_reproduces_the_run_normalisation(run_multihead, tiny_run):
    (per_image,) = preprocessing(ModelBundle.load(run_multihead))
    assert per_image == {"id": "scale_range", "kwargs": {"axes": ["y", "x"], "min_percentile": 2.0,
                                                         "max_percentile": 99.5, "eps": 1e-6}}  # fmt: skip
    bundle = ModelBundle.load(tiny_run)
    (fixed,) = preprocessing(bundle)
    norm = bundle.cfg.data.normalization
    raw = np.array([norm.low[0], norm.high[0]])
    assert fixed["id"] == "scale_linear"
    assert raw * fixed["kwargs"]["gain"][0] + fixed["kwargs"]["offset"][0] == pytest.approx([0, 1])


def test_the_architecture_file_needs_torch_only():
    tree = ast.parse(architecture_source())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"math", "torch", "torch.nn.functional", "torch.nn", "collections.abc", "__future__"}
