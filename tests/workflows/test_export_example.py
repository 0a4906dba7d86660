"""The README's ONNX example: numpy, onnxruntime and the metadata give the labels ``bioseg predict`` gives."""

import os
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import tifffile
from helpers import REPO, run_cli

EXAMPLE = REPO / "examples" / "onnx_predict.py"
WITHOUT_BIOSEG = """
import importlib.util, os, runpy, sys
sys.path = [p for p in sys.path if not os.path.isdir(os.path.join(p or ".", "bioseg"))]
assert importlib.util.find_spec("bioseg") is None, "bioseg is importable"
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_the_readme_quotes_the_example_as_it_is():
    readme = (REPO / "README.md").read_text()
    opening = "<!-- examples/onnx_predict.py -->\n```python\n"
    start = readme.index(opening) + len(opening)
    end = readme.index("```\n<!-- end examples/onnx_predict.py -->")
    assert readme[start:end] == EXAMPLE.read_text()


def test_the_example_predicts_a_large_image_as_bioseg_predict_does(tiny_run, exported, tmp_path):
    from bioseg.demos.cells2d import write_cells_dataset

    root = write_cells_dataset(tmp_path / "big", 1, size=(150, 230), seed=5)
    image = next((root / "images").iterdir())
    np.save(tmp_path / "image.npy", iio.imread(image))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    args = [str(EXAMPLE), str(exported["2d"] / "model.onnx"), str(tmp_path / "image.npy"), str(tmp_path / "labels.npy")]
    done = subprocess.run([sys.executable, "-I", "-c", WITHOUT_BIOSEG, *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    ours = np.load(tmp_path / "labels.npy") > 0
    assert run_cli("predict", tiny_run, image, "-o", tmp_path / "pred", "--precision", "fp32", "--no-progress") == 0
    theirs = tifffile.imread(next((tmp_path / "pred").glob("*_labels.tif"))) > 0
    assert 0.05 < theirs.mean() < 0.95  # a real segmentation
    dice = 2 * (ours & theirs).sum() / (ours.sum() + theirs.sum())
    assert dice >= 0.999
