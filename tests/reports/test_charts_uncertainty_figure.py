"""The README's uncertainty picture is drawn by examples/uncertainty_figure.py with the chart helpers."""

import runpy
import sys
from unittest.mock import patch

import imageio.v3 as iio
import numpy as np
from helpers import REPO, saved_run

from bioseg.io import write_png


def _draw(image, out, run, *extra):
    with patch.object(sys, "argv", ["uncertainty_figure.py", str(image), str(out), str(run), *extra]):
        runpy.run_path(str(REPO / "examples" / "uncertainty_figure.py"), run_name="__main__")
    height, width = iio.imread(out).shape[:2]
    return width / height


def test_the_example_draws_uncertainty_and_with_views_their_disagreement(tmp_path):
    run = saved_run(tmp_path / "run", {"data": {"root": str(tmp_path / "absent"), "patch_size": [32, 32]},
                                       "model": {"widths": [4, 8]}, "infer": {"precision": "fp32"}})  # fmt: skip
    image = tmp_path / "cells.png"
    write_png(image, np.random.default_rng(0).integers(0, 255, (40, 50), dtype=np.uint8))
    one_view = _draw(image, tmp_path / "one.png", run)
    views = _draw(image, tmp_path / "views.png", run, "--tta")
    assert one_view < 2.2 < 2.5 < views  # two panels; with test-time views a third: the disagreement
