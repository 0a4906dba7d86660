"""The pipeline the demos share: folders, numbered steps, the check of generated data, torch threads."""

import os

import numpy as np
import pytest

from bioseg.demos.runner import DEMOS, Steps, check_generated, folders, free_cores, launch, torch_threads
from bioseg.errors import BiosegError
from bioseg.io import write_png


def test_folders_refuse_a_folder_that_holds_a_run(tmp_path):
    where = folders(tmp_path)
    assert (where.out, where.data, where.runs) == (tmp_path.resolve(), tmp_path / "data", tmp_path / "runs")
    (tmp_path / "runs").mkdir()
    with pytest.raises(BiosegError, match="already holds a demo run"):
        folders(tmp_path)


def test_steps_are_numbered_and_two_can_share_a_line():
    lines: list[str] = []
    steps = Steps(4, lines.append)
    steps("generating")
    steps("checking")
    steps("predicting", "evaluating the test images")
    assert lines == ["1/4 generating", "2/4 checking", "3/4 predicting and 4/4 evaluating the test images"]


def test_check_generated_lists_every_problem(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        write_png(tmp_path / "images" / f"{name}.png", rng.integers(0, 255, (16, 16), dtype=np.uint8))
    write_png(tmp_path / "masks" / "a.png", np.eye(16, dtype=np.uint8))
    write_png(tmp_path / "masks" / "b.png", np.eye(16, dtype=np.uint8) * 7)
    write_png(tmp_path / "masks" / "c.png", np.eye(16, dtype=np.uint8) * 9)
    assert len(check_generated(tmp_path)) == 3  # without classes only the structure is checked
    with pytest.raises(BiosegError, match="failed its own check") as err:
        check_generated(tmp_path, num_classes=2)
    assert "b.png" in str(err.value) and "c.png" in str(err.value)


def test_launch_knows_every_demo_and_refuses_others(tmp_path):
    from importlib import import_module

    assert set(DEMOS) == {"cells", "3d", "multitask"}
    for module, function in DEMOS.values():
        assert callable(getattr(import_module(module), function))
    with pytest.raises(BiosegError, match="no demo 'nope'"):
        launch("nope", tmp_path)


def test_torch_threads_sets_then_restores_the_count():
    import torch

    before = torch.get_num_threads()
    with torch_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None) as n:  # capped at the free cores, never below 1
        assert 1 <= n <= min(before, free_cores()) and torch.get_num_threads() == n
    assert torch.get_num_threads() == before and 1 <= free_cores() <= (os.cpu_count() or 1)


@pytest.mark.parametrize(("load", "free"), [(0.0, 2), (1.0, 2), (2.0, 1), (3.4, 1)])
def test_free_cores_leave_out_this_process_own_load(monkeypatch, load, free):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert free_cores() == free
