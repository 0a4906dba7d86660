"""``report.html``: one self-contained page per run folder that gathers what a user looks at after training.

Written at the end of training and rewritten by ``evaluate`` and ``tune-instances``, always from the files
the run folder holds (see :mod:`.run_report_sections`). The package versions are recorded once, in
``versions.json``, by the first writer (normally training), so a later rewrite keeps the versions that
made the model.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from bioseg.reports import run_report_sections as parts
from bioseg.reports.report_html import page

REPORT = "report.html"
VERSIONS = "versions.json"
PACKAGES = ("bioseg", "torch", "lightning", "numpy", "scipy", "scikit-image", "tifffile", "pydantic")


def package_versions() -> dict[str, str]:
    """Python's and the main packages' versions in this environment."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def record_versions(run_dir: Path, by: str) -> dict[str, Any]:
    """``versions.json`` of the run, written now (by ``by``) if it does not exist yet."""
    path = run_dir / VERSIONS
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    doc = {"recorded_by": by, "date": datetime.date.today().isoformat(), "versions": package_versions()}
    path.write_text(json.dumps(doc, indent=2))
    return doc


def _config(run_dir: Path) -> dict[str, Any]:
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def render_run_report(run_dir: str | Path, by: str = "training", worst: int = 4) -> str:
    """The report's HTML for ``run_dir`` (a run folder, ``…/fold_0``); ``worst``: overlays shown."""
    run_dir = Path(run_dir)
    cfg = _config(run_dir)
    history = parts._read_csv(run_dir / "metrics.csv")
    sections = [
        parts.summary(run_dir, cfg, history),
        parts.curves(run_dir),
        parts.scores(run_dir),
        parts.worst(run_dir, worst),
        parts.instances(run_dir),
        parts.freezing(history),
        parts.configuration(run_dir),
        parts.versions(record_versions(run_dir, by)),
    ]
    name = f"{cfg.get('name', run_dir.parent.name)} / {run_dir.name}"
    return page(f"bioseg run report: {name}", str(run_dir.resolve()), [s for s in sections if s is not None])


def write_run_report(run_dir: str | Path, by: str = "training", worst: int = 4) -> Path:
    """Write (or rewrite) ``run_dir/report.html``; ``by`` names the command, recorded with the versions
    when this is the run's first report. Written aside and renamed: a reader never sees half a page."""
    run_dir = Path(run_dir)
    text = render_run_report(run_dir, by, worst)
    path = run_dir / REPORT
    tmp = run_dir / f".{REPORT}.tmp-{os.getpid()}"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
