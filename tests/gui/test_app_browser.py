"""``bioseg gui`` served for real and used in headless Chromium: upload, adjust, predict, download; bad
inputs as one line; no request to another host than 127.0.0.1; the run's report in its tab."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import tifffile

from bioseg.io import write_png, write_tiff

LIMIT_MB = 0.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> int:
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=5) as response:
        return response.status


@pytest.fixture(scope="module")
def volume_run(tmp_path_factory) -> Path:
    """An untrained 3D model that predicts objects (its folder sorts after the 2D run's: listed second)."""
    from helpers import saved_run

    folder = tmp_path_factory.mktemp("z_volume_run")
    return saved_run(folder, {
        "name": "volumes",
        "data": {"root": str(folder / "absent"), "patch_size": [8, 32, 32]},
        "model": {"spatial_dims": 3, "widths": [4, 8], "pool_sizes": [[1, 2, 2]]},
        "infer": {"patch_size": [8, 32, 32], "precision": "fp32"},
        "post": {"instances": {"mode": "foreground"}},
    })  # fmt: skip


@pytest.fixture(scope="module")
def server(object_run, volume_run, browser, tmp_path_factory):
    """``bioseg gui`` with the 2D and the 3D run on a free loopback port, its temporary folder under a
    folder of this test."""
    port, temp = _free_port(), tmp_path_factory.mktemp("gui_tmp")
    command = [sys.executable, "-m", "bioseg", "gui", str(object_run), str(volume_run), "--port", str(port),
               "--max-upload-mb", str(LIMIT_MB)]  # fmt: skip
    log = temp.parent / f"gui_{port}.log"
    with log.open("w") as out:
        env = {**os.environ, "TMPDIR": str(temp), "HOME": str(temp)}  # nothing written outside the test's folder
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(240):
        if proc.poll() is not None:
            pytest.fail(f"bioseg gui stopped: {log.read_text()}")
        try:
            if _get(url) == 200:
                break
        except OSError:
            time.sleep(0.25)
    yield {"url": url, "proc": proc, "temp": temp, "log": log}
    if proc.poll() is None:
        proc.terminate()
        proc.wait(20)


@pytest.fixture
def page(server, browser):
    """A fresh page of the app; every request is recorded and any to another host is blocked."""
    context = browser.new_context(viewport={"width": 1366, "height": 1000}, accept_downloads=True)
    asked: list[str] = []

    def route(r):
        asked.append(r.request.url)
        host = urlsplit(r.request.url).hostname
        return r.continue_() if host == "127.0.0.1" else r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.asked = asked
    page.goto(server["url"])
    page.wait_for_selector("#predict")
    page.wait_for_function("document.querySelector('#about') && document.querySelector('#about').innerText.length")
    yield page
    context.close()


def predict(page, *files: Path, threshold: float | None = None, precision: str | None = None) -> str:
    """Upload ``files``, optionally set the threshold and precision, click Predict; the status line once
    it says."""
    page.locator("#images input[type=file]").set_input_files([str(f) for f in files])
    for f in files:
        page.locator("#images").get_by_text(f.stem).first.wait_for()  # several files: name and suffix apart
    if threshold is not None:
        box = page.locator("#threshold input[type=number]")
        box.fill(str(threshold))
        box.press("Enter")
    if precision is not None:
        page.locator("#precision input").click()
        page.get_by_role("option", name=precision).click()
    page.click("#predict")
    page.wait_for_function("/^(Done|Error)/.test(document.querySelector('#status').innerText.trim())",
                           timeout=90_000)  # fmt: skip
    return page.locator("#status").inner_text().strip()


@pytest.fixture(scope="module")
def image(cells_dir) -> Path:
    return sorted((cells_dir / "images").iterdir())[0]


def test_predict_in_the_page_gives_bioseg_predicts_labels(page, image, object_run, tmp_path, screenshots):
    status = predict(page, image, threshold=0.3, precision="fp32")  # fp32: no speed measurement decides
    assert status.startswith(f"Done: predicted 1 image(s): {image.stem}")
    page.locator("#overlay img").wait_for()
    assert page.locator("#objects table").count() == 1  # instance mode: the objects' table
    page.screenshot(path=str(screenshots / "web_gui.png"), full_page=True)
    with page.expect_download() as download:
        page.locator("#download a").first.click()
    archive = tmp_path / "gui.zip"
    download.value.save_as(archive)
    zipfile.ZipFile(archive).extractall(tmp_path / "gui")
    from helpers import run_cli

    assert run_cli("predict", object_run, image, "-o", tmp_path / "cli", "--threshold", "0.3", "--precision", "fp32",
                   "--no-progress") == 0
    for name in (f"{image.stem}_labels.tif", f"{image.stem}_instances.tif"):
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "gui" / name),
                                      tifffile.imread(tmp_path / "cli" / name))  # fmt: skip
    default = tifffile.imread(tmp_path / "cli" / f"{image.stem}_prob.tif")[0] > 0.5  # the run's own threshold
    assert not np.array_equal(tifffile.imread(tmp_path / "gui" / f"{image.stem}_labels.tif"), default)


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    folder, rng = tmp_path_factory.mktemp("bad"), np.random.default_rng(1)
    files = {"rgb": folder / "colour.png", "stack": folder / "stack.tif", "corrupt": folder / "broken.png",
             "large": folder / "large.tif"}  # fmt: skip
    write_png(files["rgb"], rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
    write_tiff(files["stack"], rng.integers(0, 255, (5, 48, 48), dtype=np.uint8), axes="ZYX")
    files["corrupt"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    write_tiff(files["large"], rng.integers(0, 255, (1024, 1024), dtype=np.uint8))  # 1 MB: over 0.5
    return files


@pytest.mark.parametrize(("kind", "said"), [
    ("rgb", "Error: colour.png has 3 channel(s)"),
    ("stack", "Error: stack.tif is a 3D stack of 5 planes; the chosen model is 2D"),
    ("corrupt", "Error: broken.png cannot be read as a PNG"),
    ("large", f"Error: large.tif is 1.0 MB; the limit is {LIMIT_MB} MB"),
])  # fmt: skip
def test_a_bad_input_is_one_line_in_the_page_and_the_app_keeps_serving(page, server, bad, kind, said):
    status = predict(page, bad[kind])
    assert status.startswith(said)
    assert "\n" not in status and "Traceback" not in page.content()
    assert server["proc"].poll() is None and _get(server["url"]) == 200  # still serving


def test_a_volume_is_shown_plane_by_plane_with_a_z_slider(page, tmp_path):
    page.locator("#run input").click()
    page.get_by_role("option", name="volumes/").click()
    page.wait_for_function("document.querySelector('#about').innerText.includes('3D')")
    stack = tmp_path / "stack.tif"
    write_tiff(stack, np.random.default_rng(2).random((5, 40, 36)).astype(np.float32), axes="ZYX")
    assert predict(page, stack).startswith("Done: predicted 1 image(s): stack")
    slider = page.locator("#z input[type=number]")
    assert slider.input_value() == "2"  # the middle plane first
    first = page.locator("#overlay img").get_attribute("src")
    slider.fill("4")
    slider.press("Enter")
    page.wait_for_function(f"document.querySelector('#overlay img').src !== {first!r}")
    assert "centroid_z" in page.locator("#objects").inner_text()


def test_no_request_leaves_the_machine(page, server, image):
    predict(page, image)
    page.get_by_role("tab", name="Run report").click()
    frame = page.frame_locator("#report-frame")
    frame.locator("section#summary h2").wait_for()
    assert frame.locator("section h2").first.inner_text() == "Summary"
    port = urlsplit(server["url"]).port
    assert len(page.asked) > 10
    assert {urlsplit(u).netloc for u in page.asked if not u.startswith("data:")} == {f"127.0.0.1:{port}"}


def test_stopping_the_server_removes_its_temporary_folder(server, page, image):
    predict(page, image)
    assert list(server["temp"].glob("bioseg-gui-*/uploads/*")), "uploads go into the app's temporary folder"
    page.context.close()
    server["proc"].terminate()
    assert server["proc"].wait(20) == 0
    assert not list(server["temp"].glob("bioseg-gui-*"))
    assert "only this machine can open it" in server["log"].read_text()
