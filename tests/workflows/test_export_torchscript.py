"""TorchScript export: the same probabilities, loadable with torch alone."""

import json
import os
import subprocess
import sys

import pytest

from bioseg.nn.bundle import ModelBundle
from bioseg.workflows.export_model import check_sizes, probability_net
from bioseg.workflows.export_torchscript import check_torchscript

WITHOUT_BIOSEG = """
import importlib.util, json, os, sys
sys.path = [p for p in sys.path if not os.path.isdir(os.path.join(p or ".", "bioseg"))]
assert importlib.util.find_spec("bioseg") is None, "bioseg is importable"
import torch
extra = {"bioseg.json": ""}
net = torch.jit.load(sys.argv[1], _extra_files=extra)
shape = json.loads(sys.argv[2])
outs = net(torch.rand(shape))
meta = json.loads(extra["bioseg.json"])
print(json.dumps({"heads": list(meta["heads"]), "shapes": [list(o.shape) for o in outs],
                  "sums": [float(o.sum(1).mean()) for o in outs]}))
"""


@pytest.mark.parametrize("kind", ["2d", "3d", "multihead"])
def test_matches_pytorch_at_other_sizes(exported, kind, tiny_run, run_3d, run_multihead):
    bundle = ModelBundle.load({"2d": tiny_run, "3d": run_3d, "multihead": run_multihead}[kind])
    path = exported[kind] / "model.torchscript.pt"
    assert check_torchscript(path, probability_net(bundle), check_sizes(bundle)) == []


def test_loads_and_runs_where_bioseg_is_not_installed(exported, tmp_path):
    path = exported["multihead"] / "model.torchscript.pt"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-I", "-c", WITHOUT_BIOSEG, str(path), "[2, 2, 40, 24]"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["heads"] == ["fg", "cells"]
    assert result["shapes"] == [[2, 1, 40, 24], [2, 3, 40, 24]]
    assert result["sums"][1] == pytest.approx(1.0, abs=1e-5)  # softmax over the classes
