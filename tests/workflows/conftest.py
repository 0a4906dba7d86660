"""Runs to export (a trained 2D run, a 3D and a multi-head model), their exports, and no network."""

import socket
from pathlib import Path

import pytest
from helpers import TINY, run_cli, saved_run


@pytest.fixture(scope="session")
def tiny_run(cells_dir: Path, tmp_path_factory) -> Path:
    """A tiny 2D run trained for two epochs on the synthetic cells."""
    work = tmp_path_factory.mktemp("export_run")
    cfg = work / "exp.yaml"
    assert run_cli("init-config", cells_dir, "-o", cfg, "--name", "tiny") == 0
    sets = [x for s in TINY for x in ("--set", s)]
    assert run_cli("train", cfg, "--no-progress", *sets, "--set", "train.epochs=2") == 0
    return work / "runs" / "tiny" / "fold_0"


@pytest.fixture(scope="session")
def run_3d(tmp_path_factory) -> Path:
    """A 3D model with anisotropic pooling (no z pooling), per-image normalisation, no data at hand."""
    folder = tmp_path_factory.mktemp("run3d")
    return saved_run(folder, {
        "name": "vol3d",
        "data": {"root": str(folder / "absent"), "patch_size": [8, 32, 32], "labels": "instance"},
        "model": {"spatial_dims": 3, "widths": [4, 8], "pool_sizes": [[1, 2, 2]]},
        "infer": {"patch_size": [8, 32, 32]},
    })  # fmt: skip


@pytest.fixture(scope="session")
def run_multihead(tmp_path_factory) -> Path:
    """A 2D model with a binary foreground head and a three-class head, two input channels."""
    folder = tmp_path_factory.mktemp("multihead")
    return saved_run(folder, {
        "name": "multihead",
        "data": {"root": str(folder / "absent"), "patch_size": [32, 32], "labels": "instance", "in_channels": 2,
                 "normalization": {"mode": "per_image", "percentiles": [2.0, 99.5]}},
        "model": {"widths": [4, 8, 8]},
        "heads": {"fg": {"type": "binary", "target": "foreground"},
                  "cells": {"type": "multiclass", "classes": 3, "target": "three_class"}},
    })  # fmt: skip


def _refuse_network(*args, **kwargs):
    raise AssertionError(f"network access attempted: {args[1:] or kwargs}")


def block_network(patch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""
    patch.setattr(socket.socket, "connect", _refuse_network)
    patch.setattr(socket, "create_connection", _refuse_network)
    patch.setattr(socket, "getaddrinfo", _refuse_network)


@pytest.fixture
def no_network(monkeypatch):
    block_network(monkeypatch)


@pytest.fixture(scope="session")
def exported(tiny_run, run_3d, run_multihead, tmp_path_factory) -> dict[str, Path]:
    """Each run exported in every format and validated: {"2d" | "3d" | "multihead": OUT}."""
    from bioseg.workflows.export import export_run

    out = tmp_path_factory.mktemp("exports")
    runs = {"2d": tiny_run, "3d": run_3d, "multihead": run_multihead}
    with pytest.MonkeyPatch.context() as patch:
        block_network(patch)
        return {k: export_run(run, out / k, validate=True).out_dir for k, run in runs.items()}



@pytest.fixture(scope="session")
def sites(tmp_path_factory) -> dict[str, Path]:
    """Two sites of synthetic 48×48 cells, 6 and 10 images (4 and 7 for training), each split on its own."""
    from bioseg.data.layouts import discover
    from bioseg.data.splits import make_splits
    from bioseg.demos.cells2d import write_cells_dataset

    out = {}
    for name, n, seed in (("lab_a", 6, 0), ("lab_b", 10, 1)):
        root = write_cells_dataset(tmp_path_factory.mktemp(name) / "data", n, size=(48, 48), seed=seed)
        make_splits(discover(root), folds=1, test_split=0.0, val_split=0.34, seed=0)
        out[name] = root
    return out


@pytest.fixture(scope="session")
def federated_run(sites, tmp_path_factory):
    """2 sites x 2 rounds of FedAvg under Flower's simulation runtime, every update kept."""
    pytest.importorskip("ray", reason="the private extra (bioseg[private]) is not installed")
    work = tmp_path_factory.mktemp("federated")
    cfg = work / "exp.yaml"
    cfg.write_text(f"name: fed\noutput_dir: {work / 'runs'}\ndata: {{root: unused}}\n")
    sets = [x for s in TINY for x in ("--set", s)]
    args = [f"--site={n}={root}" for n, root in sites.items()]
    code = run_cli("federated", cfg, *args, "--rounds", "2", "--local-epochs", "1", "--keep-updates", *sets)
    assert code == 0
    return work / "runs" / "fed" / "fold_0"
