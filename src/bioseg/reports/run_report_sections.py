"""The sections of a run's ``report.html``, each read from the files the run folder already holds.

Every section reads what is there and says plainly what is not (a run not yet evaluated has no test
scores), so the report can be written at the end of training and rewritten after each evaluation.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from bioseg.reports.report_html import Section, image_tag, preformatted, table

NOTE = '<p class="note">{}</p>'
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")  # saved with the weights, not learnt by them


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_csv(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number(text: str | None) -> Any:
    if text is None or text == "":
        return math.nan
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def best_epoch(history: list[dict[str, Any]], monitor: str, mode: str) -> tuple[dict[str, Any] | None, str]:
    """The epoch row with the best ``monitor`` and the key read; without validation, the lowest training
    loss (what training itself then monitors)."""
    for key, pick in ((monitor.removesuffix("_epoch"), mode), ("train/loss_epoch", "min")):
        rows = [r for r in history if isinstance(r.get(key), int | float) and not math.isnan(r[key])]
        if rows:
            return (max if pick == "max" else min)(rows, key=lambda r: r[key]), key
    return None, monitor


def summary(run_dir: Path, cfg: dict[str, Any], history: list[dict[str, Any]]) -> Section:
    """Data, model, heads, training time and precision, the best epoch."""
    data, model, train = cfg.get("data", {}), cfg.get("model", {}), cfg.get("train", {})
    rows: list[dict[str, Any]] = [
        {"": "run", "value": f"{cfg.get('name', run_dir.parent.name)}, fold {data.get('fold', 0)} ({run_dir})"},
        {"": "data", "value": f"{data.get('root')} ({data.get('labels', 'semantic')} labels, "
                              f"{data.get('in_channels', 1)} channel(s), patch {data.get('patch_size')})"},
        {"": "model", "value": _model_line(run_dir, model)},
    ]  # fmt: skip
    for name, head in cfg.get("heads", {}).items():
        classes = data.get("classes") if len(cfg.get("heads", {})) == 1 else None
        names = f": {', '.join(map(str, classes))}" if classes else ""
        rows.append({"": f"head {name}", "value": f"{head.get('type')}, {head.get('classes')} classes{names}"})
    if history:
        seconds = history[-1].get("time_s", math.nan)
        took = f"{seconds / 60:.1f} min" if isinstance(seconds, int | float) and not math.isnan(seconds) else "n/a"
        rows.append({"": "training", "value": f"{len(history)} epoch(s) in {took}, precision "
                                              f"{train.get('precision', 'auto')}"})  # fmt: skip
    for folder in evaluated_splits(run_dir):
        doc = _read_json(folder / "metrics.json") or {}
        score = doc.get("dataset", {})
        if "dice_mean" in score:
            said = f"Dice {score['dice_mean']:.4f}, IoU {score.get('iou_mean', math.nan):.4f}"
            rows.append({"": f"{folder.name} scores", "value": f"{said} on {doc.get('n_images')} images (first head)"})
    monitor, mode = train.get("monitor", "val/dice_mean"), train.get("monitor_mode", "max")
    best, key = best_epoch(history, monitor, mode)
    if best is not None:
        rows.append({"": "best epoch", "value": f"{int(best.get('epoch', 0)) + 1}: {key} {best[key]:.4f}"})
    else:
        rows.append({"": "best epoch", "value": "n/a (no epoch finished)"})
    return Section("summary", "Summary", table(rows, ["", "value"], sortable=False))


def _model_line(run_dir: Path, model: dict[str, Any]) -> str:
    """``unet 2D, widths [16, 32], 47,234 parameters`` (the count read from the saved weights' header)."""
    line = f"{model.get('name', 'unet')} {model.get('spatial_dims', 2)}D"
    if model.get("widths"):
        line += f", widths {model['widths']}"
    try:
        from safetensors import safe_open

        with safe_open(str(run_dir / "model" / "weights.safetensors"), "np") as f:
            count = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys() if not k.endswith(BUFFERS))  # noqa: SIM118
        line += f", {count:,} parameters"
    except Exception:  # noqa: BLE001  (no weights yet, or unreadable: the count is left out)
        pass
    return line


def curves(run_dir: Path) -> Section:
    """The training charts and the snapshots of validation images."""
    charts = sorted((run_dir / "charts").glob("*.png"))
    snapshots = sorted((run_dir / "charts" / "snapshots").glob("*.png"))
    if not charts and not snapshots:
        return Section("curves", "Curves", NOTE.format("no charts in this run folder"))
    body = '<div class="figures charts">' + "".join(image_tag(p, p.stem) for p in charts) + "</div>"
    if snapshots:
        body += "<h3>Validation snapshots (image, truth, prediction)</h3>"
        body += '<div class="figures snaps">' + "".join(image_tag(p, p.stem) for p in snapshots) + "</div>"
    return Section("curves", "Curves", body)


def evaluated_splits(run_dir: Path) -> list[Path]:
    """The folders under ``predictions/`` that ``evaluate`` wrote scores into, test first."""
    found = [p.parent for p in sorted((run_dir / "predictions").glob("*/metrics.json"))]
    return sorted(found, key=lambda p: (p.name != "test", p.name))


def _class_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    heads = doc.get("heads") or {"": doc}
    rows = []
    for head, summary_ in heads.items():
        scores = summary_.get("dataset", {})
        names = [k.removeprefix("dice/") for k in scores if k.startswith("dice/")]
        for name in names:
            rows.append({"head": head or "-", "class": name, "dice": scores[f"dice/{name}"],
                         "iou": scores.get(f"iou/{name}", math.nan)})  # fmt: skip
        rows.append({"head": head or "-", "class": f"mean {summary_.get('means', '')}".strip(),
                     "dice": scores.get("dice_mean", math.nan), "iou": scores.get("iou_mean", math.nan)})  # fmt: skip
    return rows


def scores(run_dir: Path) -> Section:
    """Per split evaluated: the per-class scores (images pooled) and the per-image table, both sortable."""
    splits = evaluated_splits(run_dir)
    if not splits:
        return Section("scores", "Scores", NOTE.format("not evaluated yet: run bioseg evaluate RUN --split test"))
    body = ""
    for folder in splits:
        doc = _read_json(folder / "metrics.json") or {}
        body += f"<h3>{folder.name}: {doc.get('n_images', '?')} images, precision {doc.get('precision', '?')}</h3>"
        body += table(_class_rows(doc), key=f"classes-{folder.name}")
        rows = _read_csv(folder / "per_image.csv")
        if rows:
            body += f"<h3>{folder.name}: per image (click a column to sort)</h3>"
            body += table(rows, key=f"images-{folder.name}")
    return Section("scores", "Scores per class and per image", body)


def _overlay_of(folder: Path, image: str) -> Path | None:
    stem = Path(image).name
    for candidate in [folder / f"{stem}_overlay.png", *sorted(folder.glob(f"{stem}_*_overlay.png"))]:
        if candidate.is_file():
            return candidate
    return None


def worst(run_dir: Path, n: int = 4) -> Section:
    """The ``n`` images of the first evaluated split with the lowest Dice mean, with their overlays."""
    splits = evaluated_splits(run_dir)
    rows = _read_csv(splits[0] / "per_image.csv") if splits else []
    rows = [r for r in rows if isinstance(r.get("dice_mean"), int | float) and not math.isnan(r["dice_mean"])]
    if not rows:
        return Section("worst", "Worst images", NOTE.format("no per-image scores yet"))
    figures = []
    for row in sorted(rows, key=lambda r: r["dice_mean"])[:n]:
        overlay = _overlay_of(splits[0], str(row["image"]))
        caption = f"{row['image']}: Dice {row['dice_mean']:.4f}"
        figures.append(image_tag(overlay, caption) if overlay else f"<p>{caption} (no overlay file)</p>")
    intro = NOTE.format(f"the {len(figures)} {splits[0].name} images with the lowest Dice mean; prediction tinted")
    return Section("worst", "Worst images", intro + '<div class="figures overlays">' + "".join(figures) + "</div>")


def instances(run_dir: Path) -> Section | None:
    """Objects: F1 against IoU, F1 by size, the table per IoU threshold, and the tuning of post.instances."""
    body = ""
    for folder in evaluated_splits(run_dir):
        doc = _read_json(folder / "metrics_instances.json")
        if doc is None:
            continue
        body += f"<h3>{folder.name}: {doc.get('n_true')} true objects, {doc.get('n_pred')} predicted</h3>"
        charts = [p for p in (folder / "f1_vs_iou.png", folder / "f1_by_size.png") if p.is_file()]
        body += '<div class="figures charts">' + "".join(image_tag(p, p.stem) for p in charts) + "</div>"
        body += table(doc.get("table", []), key=f"objects-{folder.name}")
    tuning = _read_json(run_dir / "instances_tuning.json")
    if tuning is not None:
        applied = "applied to the model" if tuning.get("applied") else "not applied"
        body += (f"<h3>tune-instances on {tuning.get('split')} ({tuning.get('images')} images, F1 at IoU "
                 f"{tuning.get('iou')}): chosen {tuning.get('chosen')}, {applied}</h3>")  # fmt: skip
        body += table(tuning.get("tried", []), key="tuning")
    return Section("instances", "Objects", body) if body else None


def freezing(history: list[dict[str, Any]]) -> Section | None:
    """The epochs at which a head was frozen or unfrozen (``frozen/<head>`` in metrics.csv changes)."""
    heads = sorted({k.removeprefix("frozen/") for r in history for k in r if k.startswith("frozen/")})
    if not heads:
        return None
    events, state = [], dict.fromkeys(heads, 0.0)
    for row in history:
        for head in heads:
            value = row.get(f"frozen/{head}", math.nan)
            if isinstance(value, int | float) and not math.isnan(value) and value != state[head]:
                events.append({"epoch": int(row.get("epoch", 0)) + 1, "head": head,
                               "event": "frozen" if value else "unfrozen"})  # fmt: skip
                state[head] = value
    body = table(events, ["epoch", "head", "event"]) if events else NOTE.format("no head was frozen")
    return Section("freezing", "Head freezing", body)


def configuration(run_dir: Path) -> Section:
    path = run_dir / "config.yaml"
    text = path.read_text() if path.is_file() else "(config.yaml is missing)"
    return Section("config", "Resolved config", preformatted(text))


def versions(recorded: dict[str, Any]) -> Section:
    rows = [{"package": k, "version": v} for k, v in recorded.get("versions", {}).items()]
    note = NOTE.format(f"recorded by {recorded.get('recorded_by', '?')} on {recorded.get('date', '?')}")
    return Section("versions", "Package versions", note + table(rows, ["package", "version"], sortable=False))
