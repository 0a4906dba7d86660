"""``bioseg gui``: its options reach the server; a folder without runs is one line and exit code 2."""

import pytest
from helpers import run_cli


def test_no_run_is_one_line_and_exit_code_2(tmp_path, capsys):
    assert run_cli("gui", tmp_path / "absent") == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("is not a folder; give run folders or folders that hold runs") and "\n" not in err
    assert run_cli("gui", tmp_path) == 2
    assert "no trained run under" in capsys.readouterr().err


@pytest.mark.parametrize("args", [[], ["--host", "0.0.0.0", "--port", "8765", "--max-upload-mb", "3"]])
def test_the_options_reach_the_server(object_run, monkeypatch, capsys, args):
    calls = {}
    monkeypatch.setattr("bioseg.gui.app.serve", lambda folders, **kw: calls.update(folders=folders, **kw))
    assert run_cli("gui", object_run, *args) == 0
    expected = {"host": "0.0.0.0", "port": 8765, "max_upload_mb": 3.0} if args else \
        {"host": "127.0.0.1", "port": 8000, "max_upload_mb": 200.0}  # fmt: skip
    assert {k: calls[k] for k in expected} == expected
    assert calls["folders"] == [object_run]
