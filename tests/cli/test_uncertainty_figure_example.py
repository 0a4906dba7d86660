"""The README's uncertainty picture is made by examples/uncertainty_figure.py: it runs on a trained run."""

import runpy
import sys
from unittest.mock import patch

import imageio.v3 as iio
from helpers import REPO


def test_the_example_draws_image_uncertainty_and_disagreement(trained, cells_dir, tmp_path):
    _, run = trained
    image = sorted((cells_dir / "images").iterdir())[0]
    out = tmp_path / "figure.png"
    argv = ["uncertainty_figure.py", str(image), str(out), str(run), "--tta"]
    with patch.object(sys, "argv", argv):
        runpy.run_path(str(REPO / "examples" / "uncertainty_figure.py"), run_name="__main__")
    height, width = iio.imread(out).shape[:2]
    assert width > 2.5 * height  # three panels side by side: with TTA the disagreement map is drawn too
