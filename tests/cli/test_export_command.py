"""``bioseg export`` on the command line."""

from helpers import run_cli


def test_export_validates_and_refuses_to_overwrite_without_force(trained, tmp_path, capsys):
    _, run = trained
    out = tmp_path / "exported"
    assert run_cli("export", run, "-o", out, "--format", "onnx,torchscript", "--validate") == 0
    printed = capsys.readouterr().out
    assert "passed: onnx: onnx.checker" in printed and "passed: torchscript" in printed
    assert (out / "model.onnx").is_file() and (out / "model.torchscript.pt").is_file()
    assert run_cli("export", run, "-o", out, "--format", "onnx") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bioseg: error: ") and "--force" in err[0]
    assert run_cli("export", run, "-o", out, "--format", "onnx", "--force") == 0
    assert not (out / "model.torchscript.pt").exists()


def test_an_unknown_format_is_one_line(trained, tmp_path, capsys):
    _, run = trained
    assert run_cli("export", run, "-o", tmp_path / "x", "--format", "keras") == 2
    assert capsys.readouterr().err.strip() == (
        "bioseg: error: export format 'keras' is unknown; choose from onnx, torchscript, bioimageio (comma-separated)"
    )
