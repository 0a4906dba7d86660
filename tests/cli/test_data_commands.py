"""check and init-config through the command line, including a config typo answered in one line."""

import subprocess
import sys

import numpy as np
import yaml
from helpers import run_cli

from bioseg.io import write_png


def test_check_reports_a_usable_dataset(cells_dir, capsys):
    assert run_cli("check", cells_dir, "--classes", "2") == 0
    out = capsys.readouterr().out
    assert "10" in out


def test_check_lists_every_problem_and_fails(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name in ("a", "b"):
        write_png(
            tmp_path / "images" / f"{name}.png", np.full((8, 8), 9, np.uint8) + np.eye(8, dtype=np.uint8)
        )
        write_png(tmp_path / "masks" / f"{name}.png", (np.eye(8) * 255).astype(np.uint8))
    write_png(tmp_path / "images" / "orphan.png", np.zeros((8, 8), np.uint8) + np.eye(8, dtype=np.uint8))
    assert run_cli("check", tmp_path, "--classes", "2") == 1
    out = capsys.readouterr().out
    assert "orphan" in out
    assert "masks/a.png" in out and "masks/b.png" in out and "mask_values" in out


def test_init_config_infers_classes_and_mapping(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        write_png(tmp_path / "images" / f"{i}.png", rng.integers(0, 255, (40, 50), dtype=np.uint8))
        write_png(
            tmp_path / "masks" / f"{i}.png", np.where(rng.random((40, 50)) > 0.5, 255, 0).astype(np.uint8)
        )
    assert run_cli("init-config", tmp_path, "-o", tmp_path / "exp.yaml") == 0
    text = (tmp_path / "exp.yaml").read_text()
    assert text.startswith("#") and "\n# Dataset" in text
    cfg = yaml.safe_load(text)
    assert cfg["data"]["mask_values"] == {0: 0, 255: 1}
    assert cfg["data"]["patch_size"] == [40, 48]  # smallest size, down to a multiple of 8
    assert run_cli("init-config", tmp_path, "-o", tmp_path / "exp.yaml") == 2  # no silent overwrite


def test_check_with_a_config_typo_is_one_line_and_reads_nothing(cells_dir, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    loss = [{"name": "bce", "pos_wieght": 3}, {"name": "dice"}]
    bad.write_text(yaml.safe_dump({"data": {"root": str(cells_dir)}, "heads": {"mask": {"loss": loss}}}))
    assert run_cli("check", cells_dir, "-c", bad) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "no option 'pos_wieght'" in err and "Did you mean 'pos_weight'?" in err
    assert captured.out == ""  # answered before the dataset was looked at
    # and before torch is imported: the answer is quick
    code = (
        "import atexit, sys; atexit.register(lambda: print('torch' in sys.modules)); "
        f"sys.argv = ['bioseg', 'check', {str(cells_dir)!r}, '-c', {str(bad)!r}]; "
        "from bioseg.cli import main; main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout.strip() == "False"
