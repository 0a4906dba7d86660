"""The page's parts without a browser: the overlay shown, the error line, the report route, Gradio kept
quiet, the address it announces and the temporary folder it removes."""

import os

import numpy as np
import pytest

from bioseg.errors import BiosegError
from bioseg.gui import app as gui_app
from bioseg.gui.predict import ImageResult, Result
from bioseg.gui.runs import find_runs

QUIET = ("GRADIO_ANALYTICS_ENABLED", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "GRADIO_TEMP_DIR")


@pytest.fixture
def quiet_env(monkeypatch):
    for key in QUIET:  # restored after the test
        monkeypatch.delenv(key, raising=False)


def _result(raw, labels, instances=None):
    return Result([ImageResult("x", raw, {"mask": labels}, {"mask": 2}, instances)], None, None)


def test_a_small_overlay_is_enlarged_by_a_whole_factor_pixels_kept():
    labels = np.zeros((8, 16), np.uint8)
    labels[2, 3] = 1
    rgb = gui_app.overlay(_result(np.arange(128, dtype=np.float32).reshape(1, 8, 16), labels))
    assert rgb.shape == (256, 512, 3)  # ×32: the largest side reaches 512
    block = rgb[64:96, 96:128]
    assert (block == block[0, 0]).all() and not np.array_equal(block[0, 0], rgb[0, 0])


def test_a_volume_shows_the_plane_asked_and_objects_rather_than_classes():
    raw = np.ones((1, 3, 8, 8), np.float32)
    labels = np.zeros((3, 8, 8), np.uint8)
    instances = np.zeros((3, 8, 8), np.int32)
    instances[2, :4] = 1
    instances[2, 4:] = 2
    result = _result(raw, labels, instances)
    top, plane2 = gui_app.overlay(result, 0), gui_app.overlay(result, 2)
    assert (top == top[0, 0]).all()  # nothing in plane 0
    assert not np.array_equal(plane2[0, 0], plane2[-1, 0])  # two objects, two colours
    assert np.array_equal(gui_app.overlay(result, 99), plane2)  # clipped to the last plane


def test_one_line_for_any_error():
    assert gui_app.one_line(BiosegError("a.png has\n3 channels")) == "a.png has 3 channels"
    assert gui_app.one_line(ValueError("bad\nthing")) == "could not predict: ValueError: bad thing"


def test_a_missing_gradio_names_the_extra(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(BiosegError, match=r"pip install 'bioseg\[gui\]'"):
        gui_app.require_gradio()


def test_the_server_serves_each_runs_report_and_turns_analytics_off(object_run, tmp_path, quiet_env):
    from fastapi.testclient import TestClient

    gui_app.quiet_gradio(tmp_path / "uploads")
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False" and os.environ["HF_HUB_OFFLINE"] == "1"
    runs = find_runs([object_run])
    demo = gui_app.build_app(runs, tmp_path, 2**20)
    assert demo.analytics_enabled is False
    with TestClient(gui_app.make_server(runs, tmp_path, 2**20)) as client:
        assert client.get("/report/0").text == (object_run / "report.html").read_text()
        assert client.get("/report/1").status_code == 404
        assert client.get("/").status_code == 200


def test_the_page_starts_from_the_runs_own_settings(object_run):
    run = find_runs([object_run])[0]
    values = dict(zip(gui_app.SETTINGS, gui_app._defaults(run), strict=True))
    assert values == {"threshold": 0.5, "overlap": 0.25, "tta": False, "precision": "auto", "object_threshold": 0.5,
                      "seed_h": 1.0, "merge_threshold": 0.5, "object_min_size": 0}  # fmt: skip


@pytest.mark.parametrize(("host", "said"), [("127.0.0.1", "only this machine can open it"),
                                            ("0.0.0.0", "the page is reachable from the network")])  # fmt: skip
def test_serve_says_who_can_reach_the_page_and_removes_its_folder(object_run, monkeypatch, tmp_path, quiet_env,
                                                                   host, said):  # fmt: skip
    import tempfile

    import uvicorn

    served = {}
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(kw))
    lines = []
    gui_app.serve([object_run], host=host, port=8123, announce=lines.append)
    assert (served["host"], served["port"]) == (host, 8123)
    assert lines == [f"1 run(s); serving http://{host}:8123 ({said}); Ctrl+C stops"]
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone
