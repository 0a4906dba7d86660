"""The command line as a whole: user errors are one line with exit code 2; --help is light and shows defaults."""

import subprocess
import sys

import pytest
from helpers import run_cli


@pytest.mark.parametrize(
    "args, expected",
    [
        (["train", "missing.yaml"], "does not exist"),
        (["check", "/no/such/folder"], "does not exist"),
        (["predict", "/no/such/run", "x.png"], "does not exist"),
    ],
)
def test_user_errors_are_one_line_with_exit_2(args, expected, capsys):
    assert run_cli(*args) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_help_is_light_and_lists_defaults():
    code = "import sys, bioseg.cli; print('torch' in sys.modules, 'lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    result = subprocess.run(
        [sys.executable, "-m", "bioseg", "predict", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "--overlap" in result.stdout and "--threshold" in result.stdout
