"""The reliability diagram is drawn from the tally's document."""

import numpy as np

from bioseg.metrics.calibration import CalibrationTally
from bioseg.reports.calibration_charts import plot_reliability


def test_reliability_diagram_is_written(tmp_path):
    rng = np.random.default_rng(0)
    tally = CalibrationTally()
    confidence = rng.uniform(0.5, 1, 1000)
    tally.add(confidence, rng.random(1000) < confidence)
    doc = {**tally.reliability(), "ece": tally.ece()}
    path = plot_reliability({"mask": doc, "empty": CalibrationTally().reliability()}, tmp_path / "r.png")
    assert path.is_file() and path.stat().st_size > 5000
