"""A run's ``metrics.csv``: one row per epoch, every logged metric a column (NaN where not logged)."""

from __future__ import annotations

import csv
import math
from pathlib import Path


def read_metrics_csv(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [{k: _to_float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _to_float(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan


def write_metrics_csv(path: Path, rows: list[dict[str, float]]) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if math.isnan(row.get(k, math.nan)) else row[k]) for k in keys})
    tmp.replace(path)
