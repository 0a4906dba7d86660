"""Calibration error and uncertainty AUROC, checked against scikit-learn and by construction."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bioseg.metrics.calibration import (
    CalibrationTally,
    auroc,
    auroc_from_counts,
    confidence_and_prediction,
    expected_calibration_error,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_scikit_learn_with_and_without_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(500) < 0.3
    scores = rng.normal(size=500) + labels
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    tied = np.round(scores, 1)  # many ties
    assert auroc(tied, labels) == pytest.approx(roc_auc_score(labels, tied), abs=1e-12)


def test_auroc_from_counts_equals_auroc_of_the_levels():
    rng = np.random.default_rng(3)
    levels = rng.integers(0, 20, 1000)
    labels = rng.random(1000) < levels / 25
    counts = [np.bincount(levels[labels == v], minlength=20) for v in (True, False)]
    assert auroc_from_counts(*counts) == pytest.approx(roc_auc_score(labels, levels), abs=1e-12)


def test_tally_auroc_finds_wrong_pixels_by_their_uncertainty():
    rng = np.random.default_rng(4)
    correct = rng.random(2000) < 0.8
    uncertainty = np.clip(np.where(correct, 0.2, 0.7) + rng.normal(0, 0.15, 2000), 0, 1)
    tally = CalibrationTally()
    tally.add(np.full(2000, 0.9), correct, uncertainty)
    assert tally.auroc() == pytest.approx(roc_auc_score(~correct, uncertainty), abs=1e-3)
    assert tally.auroc() > 0.95


def test_ece_is_zero_when_calibrated_and_the_gap_when_overconfident():
    confidence = np.repeat([0.55, 0.75, 0.95], 1000)
    correct = np.concatenate([np.arange(1000) < 550, np.arange(1000) < 750, np.arange(1000) < 950])
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.0, abs=1e-9)
    assert expected_calibration_error(np.full(1000, 0.99), np.arange(1000) < 700) == pytest.approx(0.29)


def test_ece_matches_the_formula_on_random_data():
    rng = np.random.default_rng(5)
    confidence, correct = rng.random(3000), rng.random(3000) < 0.6
    which = np.minimum((confidence * 15).astype(int), 14)
    expected = sum(
        abs(correct[which == b].mean() - confidence[which == b].mean()) * (which == b).mean()
        for b in range(15)
        if (which == b).any()
    )
    assert expected_calibration_error(confidence, correct) == pytest.approx(expected)


def test_confidence_of_binary_and_multiclass_heads():
    conf, pred = confidence_and_prediction(np.array([[0.2, 0.9]]), "binary")
    np.testing.assert_allclose(conf, [0.8, 0.9])
    np.testing.assert_array_equal(pred, [0, 1])
    conf, pred = confidence_and_prediction(np.array([[0.2, 0.1], [0.5, 0.3], [0.3, 0.6]]), "multiclass")
    np.testing.assert_allclose(conf, [0.5, 0.6])
    np.testing.assert_array_equal(pred, [1, 2])
