"""Tiny untrained runs and images for the block-wise prediction tests."""

from pathlib import Path

import pytest
from helpers import saved_run


@pytest.fixture(scope="session")
def run_2d_multihead(tmp_path_factory) -> Path:
    """A 2D run with two input channels, a binary and a three-class head, fp32 prediction."""
    folder = tmp_path_factory.mktemp("blocks2d")
    return saved_run(folder, {
        "name": "blocks2d",
        "data": {"root": str(folder / "absent"), "patch_size": [32, 32], "labels": "instance", "in_channels": 2,
                 "normalization": {"mode": "per_image", "percentiles": [2.0, 99.5]}},
        "model": {"widths": [4, 8, 8]},
        "heads": {"fg": {"type": "binary", "target": "foreground"},
                  "cells": {"type": "multiclass", "classes": 3, "target": "three_class"}},
        "infer": {"patch_size": [32, 32], "precision": "fp32", "overlap": 0.5},
    })  # fmt: skip
