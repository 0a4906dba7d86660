"""The tiny trained run the command-line tests share (per test module: they change it)."""

from pathlib import Path

import pytest
from helpers import TINY, run_cli


@pytest.fixture(scope="module")
def trained(cells_dir: Path, tmp_path_factory) -> tuple[Path, Path]:
    """A config from init-config and one tiny trained run: (config path, run folder)."""
    work = tmp_path_factory.mktemp("work")
    cfg = work / "exp.yaml"
    assert run_cli("init-config", cells_dir, "-o", cfg, "--name", "tiny") == 0
    sets = [x for s in TINY for x in ("--set", s)]
    assert run_cli("train", cfg, "--no-progress", *sets, "--set", "train.epochs=2") == 0
    return cfg, work / "runs" / "tiny" / "fold_0"
