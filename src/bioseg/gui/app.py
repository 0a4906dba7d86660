"""``bioseg gui``: a Gradio page to choose a trained run, upload images, adjust the settings and get the
segmentation back (overlay, objects, one zip of TIFFs), with the run's report beside it.

The page is served on 127.0.0.1 unless another host is asked for; Gradio's analytics and every other
call home are off, and the page loads nothing from another host (its fonts are Gradio's local ones).
Uploads and results live in one temporary folder, pruned while serving and removed when it stops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from bioseg.errors import BiosegError
from bioseg.gui.predict import Result, Settings, predict_uploads
from bioseg.gui.runs import RunInfo
from bioseg.io import IMAGE_SUFFIXES
from bioseg.reports.charts import overlay_rgb

logger = logging.getLogger("bioseg")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
KEEP_RESULTS_S = 3600  # results older than this are removed at the next prediction
PRECISIONS = ["auto", "fp32", "bf16", "fp16"]
DISPLAY_PX = 512  # overlays smaller than this are shown enlarged by a whole factor


def quiet_gradio(temp_dir: Path) -> None:
    """Gradio's analytics and version check off, Hugging Face hub offline, uploads into ``temp_dir``;
    set before gradio is imported, since it reads some of them at import."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["GRADIO_TEMP_DIR"] = str(temp_dir)


def require_gradio() -> None:
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise BiosegError("bioseg gui needs gradio: install the gui extra, pip install 'bioseg[gui]'")


def overlay(result: Result, z: int = 0, index: int = 0) -> np.ndarray:
    """Image ``index``'s overlay as RGB ``(Y, X, 3)``, enlarged when small: its objects in instance mode,
    else the first head's classes; plane ``z`` of a volume."""
    image = result.images[index]
    head = next(iter(image.labels))
    labels, classes = image.labels[head], image.classes[head]
    if image.instances is not None:
        labels, classes = image.instances, int(image.instances.max()) + 1
    raw = image.raw
    if labels.ndim == 3:  # a volume: one plane
        z = int(np.clip(z, 0, labels.shape[0] - 1))
        labels, raw = labels[z], raw[:, z]
    rgb = overlay_rgb(raw, labels, max(classes, 2))
    factor = max(1, DISPLAY_PX // max(rgb.shape[:2]))  # small images enlarged, pixels kept sharp
    return rgb.repeat(factor, axis=0).repeat(factor, axis=1)


def _prune(results: Path) -> None:
    for folder in results.glob("*"):
        if time.time() - folder.stat().st_mtime > KEEP_RESULTS_S:
            shutil.rmtree(folder, ignore_errors=True)


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if isinstance(err, BiosegError) else f"could not predict: {type(err).__name__}: {text}"


def build_app(runs: list[RunInfo], work_dir: Path, max_bytes: int) -> Any:
    """The Gradio Blocks of the page (not served: see :func:`serve`)."""
    import gradio as gr

    results_dir = work_dir / "results"
    choices = [(r.label, str(k)) for k, r in enumerate(runs)]

    def run_of(index: str) -> RunInfo:
        return runs[int(index)]

    def describe(index: str) -> tuple[str, str]:
        run = run_of(index)
        objects = "objects: the settings below apply" if run.instances else "no objects (post.instances is off)"
        text = f"**{run.name}** — `{run.path}` — {run.spatial_dims}D, {run.in_channels} channel(s); {objects}"
        frame = (f'<iframe id="report-frame" src="/report/{index}" style="width:100%;height:720px;border:1px solid '
                 f'#ccc"></iframe><p><a href="/report/{index}" target="_blank">open the report in its own tab</a>'
                 "</p>")  # fmt: skip
        return text, frame

    def predict(index, files, server_path, threshold, overlap, tta, precision, o_thr, o_h, o_merge, o_min,
                progress=gr.Progress()):  # fmt: skip
        paths = [Path(f if isinstance(f, str) else f.name) for f in (files or [])]
        if server_path and server_path.strip():
            paths.append(Path(server_path.strip()).expanduser())
        minimum = int(o_min) if o_min is not None else None  # an emptied box: the run's own value
        settings = Settings(threshold, overlap, bool(tta), precision, o_thr, o_h, o_merge, minimum)
        results_dir.mkdir(parents=True, exist_ok=True)
        _prune(results_dir)
        out = results_dir / uuid.uuid4().hex
        try:
            result = predict_uploads(run_of(index).path, paths, settings, out, max_bytes,
                                     progress=lambda f, text: progress(f, desc=text))  # fmt: skip
        except Exception as err:  # noqa: BLE001  (one line in the page, the app keeps serving)
            if not isinstance(err, BiosegError):
                logger.exception("prediction failed")
            shutil.rmtree(out, ignore_errors=True)
            hidden = gr.update(visible=False)
            return f"Error: {one_line(err)}", None, hidden, hidden, hidden, None, None
        names = [i.name for i in result.images]
        objects = sum(len(i.objects) for i in result.images)
        found = f"; {objects} objects" if result.images[0].instances is not None else ""
        status = f"Done: predicted {len(names)} image(s): {', '.join(names)}{found}"
        shown = gr.update(choices=names, value=names[0], visible=len(names) > 1)
        return status, *view(result, names[0]), shown, str(result.archive), result

    def view(result, name, z=None):
        """The overlay, z slider and objects' table of the image ``name`` (a volume: plane ``z``, else the middle)."""
        if result is None:
            return None, gr.update(visible=False), gr.update(visible=False)
        index = next((k for k, i in enumerate(result.images) if i.name == name), 0)
        image = result.images[index]
        depth = image.raw.shape[1] if image.raw.ndim == 4 else 0
        z = depth // 2 if z is None else int(z)
        rows = [list(r.values()) for r in image.objects]
        table = gr.update(value=rows, headers=list(image.objects[0]) if image.objects else None,
                          visible=image.instances is not None)  # fmt: skip
        slider = gr.update(visible=depth > 1, maximum=max(depth - 1, 1), value=z)
        return overlay(result, z, index), slider, table

    def plane(result, name, z):
        return view(result, name, z)[0]

    first = runs[0]
    start = dict(zip(SETTINGS, _defaults(first), strict=True))  # the page opens with the first run's settings
    with gr.Blocks(title="bioseg", analytics_enabled=False, delete_cache=(600, KEEP_RESULTS_S)) as demo:
        gr.Markdown("# bioseg — segment images with a trained model")
        with gr.Row():
            run_box = gr.Dropdown(choices, value="0", label="model", elem_id="run", scale=3)
        about = gr.Markdown(describe("0")[0], elem_id="about")
        with gr.Tab("Predict"):
            with gr.Row():
                with gr.Column(scale=1):
                    files = gr.File(file_count="multiple", label="images (PNG, JPG, TIFF; 3D TIFF stacks)",
                                    elem_id="images", file_types=list(IMAGE_SUFFIXES))  # fmt: skip
                    server_path = gr.Textbox(label="or a path on this machine (OME-Zarr store, HDF5 file, image)",
                                             elem_id="server_path")  # fmt: skip
                    settings_boxes, objects_box = _settings_inputs(gr, start, first.instances)
                    button = gr.Button("Predict", variant="primary", elem_id="predict")
                with gr.Column(scale=2):
                    status = gr.Markdown("", elem_id="status")
                    shown = gr.Dropdown([], label="image shown", elem_id="shown", visible=False, interactive=True)
                    image = gr.Image(label="overlay", elem_id="overlay", interactive=False, type="numpy")
                    z = gr.Slider(0, 1, value=0, step=1, label="z plane", elem_id="z", visible=False)
                    objects = gr.Dataframe(label="objects", elem_id="objects", interactive=False, visible=False,
                                           max_height=320)
                    download = gr.File(label="download: labels, probabilities and objects (TIFF) in one zip",
                                       elem_id="download", interactive=False)  # fmt: skip
        with gr.Tab("Run report"):
            report = gr.HTML(describe("0")[1], elem_id="report")
        state = gr.State(None)

        def on_run(index: str):
            run = run_of(index)
            values = _defaults(run)
            text, frame = describe(index)
            return [text, frame, gr.update(open=run.instances), *values]

        run_box.change(on_run, run_box, [about, report, objects_box, *settings_boxes])
        button.click(predict, [run_box, files, server_path, *settings_boxes],
                     [status, image, z, objects, shown, download, state], concurrency_limit=1)  # fmt: skip
        shown.input(lambda result, name: view(result, name), [state, shown], [image, z, objects])
        z.input(plane, [state, shown, z], image)
    return demo


def _settings_inputs(gr: Any, start: dict[str, Any], instances: bool) -> tuple[list[Any], Any]:
    """The settings' inputs, in the order of :data:`SETTINGS`, set to the values in ``start``; and the
    group of the object settings (open when the run predicts objects)."""
    with gr.Accordion("settings", open=True):
        boxes = [
            gr.Slider(0.01, 0.99, value=start["threshold"], step=0.01, label="threshold", elem_id="threshold"),
            gr.Slider(0.0, 0.75, value=start["overlap"], step=0.05, label="tile overlap", elem_id="overlap"),
            gr.Checkbox(start["tta"], label="test-time augmentation (flips and turns)", elem_id="tta"),
            gr.Dropdown(PRECISIONS, value=start["precision"], label="precision", elem_id="precision"),
        ]
    with gr.Accordion("objects (instance mode)", open=instances) as objects_box:
        boxes += [
            gr.Slider(0.01, 0.99, value=start["object_threshold"], step=0.01, label="object threshold",
                      elem_id="object_threshold"),
            gr.Number(start["seed_h"], label="seed h (voxels)", elem_id="seed_h", minimum=0),
            gr.Slider(0.0, 1.0, value=start["merge_threshold"], step=0.05, label="merge threshold",
                      elem_id="merge_threshold"),
            gr.Number(start["object_min_size"], label="minimum object size (pixels)", elem_id="min_size", minimum=0,
                      precision=0),
        ]  # fmt: skip
    return boxes, objects_box


SETTINGS = ["threshold", "overlap", "tta", "precision", "object_threshold", "seed_h", "merge_threshold",
            "object_min_size"]  # fmt: skip


def _defaults(run: RunInfo) -> list[Any]:
    """The run's own settings, which the page starts from."""
    from bioseg.nn.bundle import read_meta

    meta = read_meta(run.path / "model")
    infer, inst = meta["infer"], meta["post"].get("instances", {})
    return [infer.get("threshold", 0.5), infer.get("overlap", 0.25), bool(infer.get("tta", False)),
            infer.get("precision", "auto"), inst.get("threshold", 0.5),
            inst.get("h", 1.0) if isinstance(inst.get("h", 1.0), int | float) else 1.0,
            inst.get("merge_threshold", 0.5), int(inst.get("min_size", 0))]  # fmt: skip


def make_server(runs: list[RunInfo], work_dir: Path, max_bytes: int) -> Any:
    """The FastAPI app: the Gradio page at ``/`` and each run's ``report.html`` at ``/report/<k>``."""
    import gradio as gr
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import HTMLResponse

    server = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @server.get("/report/{index}", response_class=HTMLResponse)
    def report(index: int) -> str:
        if not 0 <= index < len(runs):
            raise HTTPException(404, "no such run")
        path = runs[index].path / "report.html"
        if not path.is_file():
            return f"<p>{runs[index].path} has no report.html yet: it is written when training ends.</p>"
        return path.read_text(encoding="utf-8")

    demo = build_app(runs, work_dir, max_bytes)
    # Gradio refuses uploads far over the limit itself; those near it reach the page's own one-line check
    return gr.mount_gradio_app(server, demo, path="/", footer_links=[], max_file_size=4 * max_bytes + 2**20,
                               allowed_paths=[str(work_dir)], ssr_mode=False, mcp_server=False)  # fmt: skip


def serve(folders: list[Path], host: str = "127.0.0.1", port: int = 8000, max_upload_mb: float = 200.0,
          announce=print) -> None:  # fmt: skip
    """Serve the page until interrupted; ``announce`` gets the lines to show the user."""
    require_gradio()
    from bioseg.gui.runs import find_runs

    runs = find_runs(folders)
    work_dir = Path(tempfile.mkdtemp(prefix="bioseg-gui-"))
    quiet_gradio(work_dir / "uploads")
    try:
        import uvicorn

        app = make_server(runs, work_dir, int(max_upload_mb * 2**20))
        where = "only this machine can open it" if host in LOOPBACK else "the page is reachable from the network"
        announce(f"{len(runs)} run(s); serving http://{host}:{port} ({where}); Ctrl+C stops")
        # uvicorn stops on SIGINT and SIGTERM, then re-raises the signal to the handler it found: made an
        # exception here, so the temporary folder is removed on either; open pages hold it 3 s at most
        with _signals_interrupt():
            uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
    except KeyboardInterrupt:
        announce("stopped")
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


@contextlib.contextmanager
def _signals_interrupt():
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: signals are not ours to handle
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
