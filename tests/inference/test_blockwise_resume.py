"""A block-wise run killed with SIGKILL part way and started again with the same command skips the
finished blocks and ends with a store identical, file for file, to an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bioseg.io.zarr_io import write_ome_zarr


def _command(run: Path, source: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "bioseg", "predict-blocks", str(run), str(source), "-o", str(out),
            "--block-size", "6,48,48", "--instances", "foreground"]  # fmt: skip


def _files(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


def _finished(store: Path) -> int:
    done = store / "bioseg" / "done" / "c"
    return sum(1 for p in done.rglob("*") if p.is_file()) if done.exists() else 0


def test_sigkill_then_rerun_equals_uninterrupted_run(run_3d_blocks, tmp_path):
    rng = np.random.default_rng(3)
    volume = (rng.random((12, 96, 96)) * 200).astype(np.float32)
    source = write_ome_zarr(tmp_path / "in.zarr", volume, chunks=(6, 48, 48))
    n_blocks = 2 * 2 * 2
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    killed = tmp_path / "killed.zarr"
    proc = subprocess.Popen(_command(run_3d_blocks, source, killed), env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _finished(killed) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = _finished(killed)
    assert proc.returncode == -signal.SIGKILL and 2 <= at_kill < n_blocks  # killed part way

    rerun = subprocess.run(_command(run_3d_blocks, source, killed), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    skipped = int(rerun.stdout.split(" predicted, ")[1].split()[0])
    assert skipped >= at_kill  # the finished blocks were not predicted again

    # the uninterrupted run in a process of its own too: torch's thread count (which the test session
    # may have changed) decides the order of float sums, and the comparison is bit for bit
    whole = tmp_path / "whole.zarr"
    subprocess.run(_command(run_3d_blocks, source, whole), env=env, check=True, capture_output=True)
    killed_files, whole_files = _files(killed), _files(whole)
    assert killed_files.keys() == whole_files.keys()
    different = [name for name in whole_files if killed_files[name] != whole_files[name]]
    assert not different
