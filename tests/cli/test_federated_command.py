"""``bioseg federated`` and ``bioseg federated-app`` mistakes are one line and exit code 2; a missing extra names it."""

import importlib.util

from helpers import run_cli


def test_a_malformed_site_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("data: {root: unused}\n")
    assert run_cli("federated", cfg, "--site", "lab_a", "--site", "b=x", "--rounds", "1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["bioseg: error: --site 'lab_a' is not NAME=DATA_DIR; write e.g. --site lab_a=data/lab_a"]


def test_without_flower_one_line_names_the_extra(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "flwr" else real(name, *a))
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("data: {root: unused}\n")
    assert run_cli("federated", cfg, "--site", "a=x", "--site", "b=y", "--rounds", "1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'bioseg[private]'" in err[0]


def test_an_unknown_strategy_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("data: {root: unused}\n")
    assert run_cli("federated", cfg, "--site", "a=x", "--site", "b=y", "--rounds", "1", "--strategy", "fedsgd") == 2
    assert "choose fedavg or fedprox" in capsys.readouterr().err


def test_half_the_privacy_options_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("data: {root: unused}\n")
    args = ("--site", "a=x", "--site", "b=y", "--rounds", "1", "--dp-noise-multiplier", "1.0")
    assert run_cli("federated", cfg, *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["bioseg: error: site-level privacy needs both --dp-noise-multiplier and --dp-clipping-norm"]
    assert run_cli("federated-app", cfg, "-o", tmp_path / "app", "--sites", "1", "--rounds", "1") == 2
    assert "two sites or more" in capsys.readouterr().err
    assert not (tmp_path / "app").exists()
