"""``bioseg calibrate``: temperature scaling of a trained run, fitted on its validation images.

A network trained to a low loss is often over-confident: its probabilities are nearer 0 and 1 than its
accuracy warrants. Dividing a head's logits by one temperature ``T`` (> 1 softens, < 1 sharpens) before
the activation changes no decision of a multiclass head (nor a binary head's at threshold 0.5) and
makes the probabilities honest (Guo et al. 2017). ``T`` is the one that minimises the negative
log-likelihood of the validation pixels; it goes into ``infer.temperature`` of the run's model, which
every later prediction applies. The expected calibration error (ECE) before and after is reported on
the same pixels, with a reliability diagram of both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from bioseg.data.dataset import read_head_masks, read_input
from bioseg.data.head_targets import make_head_targets
from bioseg.data.resize import fit_to_square, plan_fit, restore
from bioseg.errors import BiosegError
from bioseg.inference.heads import activate
from bioseg.inference.predictor import Predictor
from bioseg.metrics.calibration import confidence_and_prediction, expected_calibration_error
from bioseg.workflows.split_predictions import split_samples

#: the range a temperature is searched in
LIMITS = (0.05, 20.0)


def nll(logits: np.ndarray, targets: np.ndarray, head_type: str, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``targets`` ``(N,)`` under ``logits / temperature`` ``(K, N)``."""
    z = torch.from_numpy(np.asarray(logits, np.float32)) / temperature
    t = torch.from_numpy(np.asarray(targets)).long()
    if head_type == "binary":
        return float(torch.nn.functional.binary_cross_entropy_with_logits(z[0], t.float()))
    return float(torch.nn.functional.cross_entropy(z.T, t))


def fit_temperature(logits: np.ndarray, targets: np.ndarray, head_type: str) -> float:
    """The temperature that minimises :func:`nll` (bounded search over log T in :data:`LIMITS`)."""
    from scipy.optimize import minimize_scalar

    found = minimize_scalar(
        lambda log_t: nll(logits, targets, head_type, float(np.exp(log_t))),
        bounds=tuple(np.log(LIMITS)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(found.x))


def head_ece(logits: np.ndarray, targets: np.ndarray, head_type: str, temperature: float = 1.0) -> float:
    """ECE of the head's probabilities at ``temperature`` (see :mod:`bioseg.metrics.calibration`)."""
    probs = activate(torch.from_numpy(np.asarray(logits, np.float32)) / temperature, head_type).numpy()
    confidence, predicted = confidence_and_prediction(probs, head_type)
    return expected_calibration_error(confidence, predicted == targets)


def collect_logits(
    predictor: Predictor, split: str, max_pixels: int = 200_000, seed: int = 0, progress: bool = False
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per head, ``(logits (K, N), targets (N,))`` of up to ``max_pixels`` pixels of ``split``, drawn
    evenly at random from each image (the network's logits, before any temperature)."""
    cfg = predictor.cfg
    samples = split_samples(cfg, split)
    rng = np.random.default_rng(seed)
    per_image = max(1, max_pixels // len(samples))
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {h: [] for h in cfg.heads}
    for sample in tqdm(samples, desc=f"logits of {split}", disable=not progress):
        image = predictor.prepare(read_input(sample.image, cfg.data, cfg.model.spatial_dims), str(sample.image))
        logits = _image_logits(predictor, image)
        targets, _ = make_head_targets(read_head_masks(sample, cfg), cfg, with_weights=False)
        for head in cfg.heads:
            z, t = logits[head].reshape(logits[head].shape[0], -1), targets[head].ravel()
            pick = rng.choice(t.size, size=min(per_image, t.size), replace=False)
            parts[head].append((z[:, pick], t[pick]))
    return {h: (np.concatenate([z for z, _ in p], 1), np.concatenate([t for _, t in p])) for h, p in parts.items()}


def _image_logits(predictor: Predictor, image: np.ndarray) -> dict[str, np.ndarray]:
    """Logits at the image's own size (through the training square with ``data.resize``)."""
    resize = predictor.cfg.data.resize
    fit = plan_fit(image.shape[1:], resize) if resize else None
    x = torch.from_numpy(np.ascontiguousarray(fit_to_square(image, fit) if fit else image, dtype=np.float32))
    logits = {h: v.cpu().numpy() for h, v in predictor.logits(x.to(predictor.device)).items()}
    return {h: restore(v, fit) for h, v in logits.items()} if fit else logits


def calibrate_run(
    run: str | Path, split: str = "val", apply: bool = True, progress: bool = True, precision: str | None = None
) -> dict[str, Any]:
    """Fit a temperature per head on ``split`` of the run (see the module's description); with ``apply``
    it is written into the run's model. Writes ``calibration.json`` and ``calibration.png`` in the run
    folder and returns the document: per head ``temperature``, ``ece_before``, ``ece_after``, ``nll_*``."""
    predictor = Predictor.from_run(run, precision=precision, temperature={}, tta=False)
    cfg, bundle = predictor.cfg, predictor.bundle
    data = collect_logits(predictor, split, progress=progress)
    heads = {}
    for head, (logits, targets) in data.items():
        kind = cfg.heads[head].type
        t = fit_temperature(logits, targets, kind)
        heads[head] = {
            "temperature": t,
            "ece_before": head_ece(logits, targets, kind),
            "ece_after": head_ece(logits, targets, kind, t),
            "nll_before": nll(logits, targets, kind),
            "nll_after": nll(logits, targets, kind, t),
            "pixels": int(targets.size),
        }
    if not heads:
        raise BiosegError(f"{run} has no heads to calibrate")
    doc = {"split": split, "applied": apply, "previous": cfg.infer.temperature, "heads": heads}
    if apply:
        calibrated = cfg.model_copy(deep=True)
        calibrated.infer.temperature = {h: round(v["temperature"], 4) for h, v in heads.items()}
        bundle.update_experiment(calibrated)
    (bundle.run_dir / "calibration.json").write_text(json.dumps(doc, indent=2))
    _chart(data, heads, cfg, bundle.run_dir / "calibration.png")
    return doc


def _chart(data: dict, heads: dict, cfg, path: Path) -> Path:
    """Reliability diagrams before and after, per head."""
    from bioseg.metrics.calibration import CalibrationTally
    from bioseg.reports.calibration_charts import plot_reliability

    curves = {}
    for head, (logits, targets) in data.items():
        kind = cfg.heads[head].type
        for label, t in (("before", 1.0), ("after", heads[head]["temperature"])):
            probs = activate(torch.from_numpy(logits) / t, kind).numpy()
            confidence, predicted = confidence_and_prediction(probs, kind)
            tally = CalibrationTally()
            tally.add(confidence, predicted == targets)
            name = f"{head}: {label}" + (f" (T = {t:.3g})" if label == "after" else "")
            curves[name] = {**tally.reliability(), "ece": tally.ece()}
    return plot_reliability(curves, path)
