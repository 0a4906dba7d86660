"""Benchmark: boundaries → instances on a synthetic (25, 1024, 1024) stack of about 1,000 cells.

Data: a 3D Voronoi tessellation of 1,000 random points in a volume of voxel size (4, 1, 1) (cells about
12 slices deep and 50 voxels wide), its faces (``find_boundaries``, inner) at boundary probability 0.85
over a background of 0.05, Gaussian noise (σ 0.08), a blur of half a voxel in-plane, and gaps: 5% of
the faces, in patches of a few voxels, drop to 0.3 (below the threshold). ``--quick``: (8, 256, 256)
with 40 cells.

Runs ``boundaries_to_instances`` twice: the defaults (h-maxima seeds, average agglomeration) and
min-distance seeds (which over-segment) with the multicut (GAEC), which loads the graph steps.
Prints the seconds of each step, the peak resident memory of the process during the call (input
arrays included), and the accuracy: the fraction of true cells whose best match has IoU > 0.5 / 0.8.

Reference, in the same process: the three steps bioseg re-implements for speed, done by SciPy /
scikit-image on the same inputs — ``distance_transform_edt``, ``skimage.morphology.h_maxima`` (+ label,
both on the float64 smoothed distance) and ``skimage.segmentation.watershed`` (float image, bioseg's
seeds) — with their speed-up and the agreement of the results.
Target: the default pipeline under 60 s and 8 GB on a 2-core machine.

    python benchmarks/bench_instances.py [--quick] [--no-reference]
"""

from __future__ import annotations

import resource
import time
from typing import Any

import _common as C
import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from bioseg.config import InstanceConfig
from bioseg.postprocess import watershed as ws
from bioseg.postprocess.instances import boundaries_to_instances

SPACING = (4.0, 1.0, 1.0)
TARGET_S = 60.0
TARGET_GB = 8.0


def make_data(shape: tuple[int, ...], n_cells: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(boundary probability float32, true labels int32) — see the module docstring."""
    rng = np.random.default_rng(seed)
    points = np.stack([rng.integers(0, s, n_cells) for s in shape], axis=1)
    seeds = np.zeros(shape, np.int32)
    seeds[tuple(points.T)] = np.arange(1, n_cells + 1)
    nearest = ndi.distance_transform_edt(seeds == 0, sampling=SPACING, return_distances=False, return_indices=True)
    truth = seeds[tuple(nearest)]
    del nearest
    faces = find_boundaries(truth, mode="inner")
    coarse = rng.random(tuple(max(s // 4, 2) for s in shape)).astype(np.float32)
    patches = ndi.zoom(coarse, [s / c for s, c in zip(shape, coarse.shape, strict=True)], order=1)[
        tuple(slice(0, s) for s in shape)
    ]
    gaps = faces & (patches > np.quantile(patches, 0.95))
    prob = np.where(faces, np.float32(0.9), np.float32(0.05))
    prob += rng.standard_normal(shape, dtype=np.float32) * np.float32(0.08)
    prob = ndi.gaussian_filter(prob, (0.25, 0.5, 0.5))
    prob[gaps] = 0.3
    np.clip(prob, 0, 1, out=prob)
    return prob, truth


def matched(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Fraction of true cells whose best-overlapping prediction has IoU above 0.5 and 0.8."""
    n_t, n_p = int(truth.max()), int(pred.max())
    pairs = truth.astype(np.int64) * (n_p + 1) + pred
    inter = np.bincount(pairs.ravel(), minlength=(n_t + 1) * (n_p + 1)).reshape(n_t + 1, n_p + 1)
    union = inter.sum(1)[:, None] + inter.sum(0)[None, :] - inter
    best = (inter[1:, 1:] / np.maximum(union[1:, 1:], 1)).max(axis=1)
    return {"iou>0.5": float(np.mean(best > 0.5)), "iou>0.8": float(np.mean(best > 0.8))}


def run_pipeline(prob: np.ndarray, truth: np.ndarray, params: InstanceConfig) -> dict[str, Any]:
    timings: dict[str, float] = {}
    with C.PeakRSS() as rss:
        start = time.perf_counter()
        labels = boundaries_to_instances(prob, params, spacing=SPACING, timings=timings)
        total = time.perf_counter() - start
    return {
        "total_s": total,
        "steps_s": timings,
        "peak_rss_gb": rss.peak_mb / 1024,
        "added_rss_gb": rss.added_mb / 1024,
        "objects": int(labels.max()),
        "true_objects": int(truth.max()),
        "matched": matched(truth, labels),
    }


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def reference(prob: np.ndarray, params: InstanceConfig) -> dict[str, Any]:
    """Each re-implemented step against SciPy / scikit-image on the same input."""
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed as sk_watershed

    region = prob <= params.threshold
    ours_d, t_ours_d = timed(ws.distance_transform, region, SPACING)
    ref_d, t_ref_d = timed(ndi.distance_transform_edt, region, sampling=SPACING)
    dist_err = float(np.abs(ours_d - ref_d).max())
    del ref_d, region
    # float64: scikit-image counts values within float rounding (2 eps relative) of a peak as equal,
    # bioseg compares exactly; in float64 no such near-tie occurs, so both must mark the same voxels.
    smoothed = ws.smooth(ours_d, params.sigma_seeds, SPACING).astype(np.float64)
    del ours_d
    ours_s, t_ours_s = timed(ws.h_maxima_seeds, smoothed, params.h)
    start = time.perf_counter()
    ref_s, _ = ndi.label(h_maxima(smoothed, params.h), structure=np.ones((3, 3, 3)))
    t_ref_s = time.perf_counter() - start
    seeds_equal = bool(np.array_equal(ours_s > 0, ref_s > 0))
    ref_count = int(ref_s.max())
    del ref_s, smoothed
    ours_w, t_ours_w = timed(ws.watershed, prob, ours_s, value_range=(0.0, 1.0))
    ref_w, t_ref_w = timed(sk_watershed, prob, ours_s)
    agreement = float(np.mean(ours_w == ref_w))
    return {
        "distance": {"bioseg_s": t_ours_d, "scipy_s": t_ref_d, "speedup": t_ref_d / t_ours_d, "max_abs_diff": dist_err},
        "h_maxima": {
            "bioseg_s": t_ours_s,
            "skimage_s": t_ref_s,
            "speedup": t_ref_s / t_ours_s,
            "identical_seeds": seeds_equal,
            "seeds": int(ours_s.max()),
            "seeds_skimage": ref_count,
        },
        "watershed": {
            "bioseg_s": t_ours_w,
            "skimage_s": t_ref_w,
            "speedup": t_ref_w / t_ours_w,
            "voxels_agreeing": agreement,
        },
    }


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--no-reference", action="store_true", help="skip the SciPy / scikit-image comparison")
    args = p.parse_args()
    shape, n_cells = ((8, 256, 256), 40) if args.quick else ((25, 1024, 1024), 1000)

    print(f"data: {shape}, {n_cells} cells, spacing {SPACING} …", flush=True)
    prob, truth = timed(make_data, shape, n_cells)[0]
    configs = {
        "default (h_maxima + average)": InstanceConfig(),
        "min_distance + multicut": InstanceConfig(seed_method="min_distance", agglomeration="multicut"),
    }
    results: dict[str, Any] = {}
    for name, params in configs.items():
        print(f"{name} …", flush=True)
        results[name] = run_pipeline(prob, truth, params)
    steps = list(next(iter(results.values()))["steps_s"])
    rows = [[step] + [r["steps_s"].get(step, 0.0) for r in results.values()] for step in steps]
    rows.append(["total"] + [r["total_s"] for r in results.values()])
    rows.append(["peak RSS (GB)"] + [r["peak_rss_gb"] for r in results.values()])
    rows.append(["objects / true"] + [f"{r['objects']} / {r['true_objects']}" for r in results.values()])
    rows.append(["matched IoU>0.5"] + [r["matched"]["iou>0.5"] for r in results.values()])
    rows.append(["matched IoU>0.8"] + [r["matched"]["iou>0.8"] for r in results.values()])
    print(C.table(rows, ["step (s)"] + list(results)))

    default = results["default (h_maxima + average)"]
    verdict = {
        "time_s": {
            "value": round(default["total_s"], 2),
            "target": f"< {TARGET_S}",
            "pass": default["total_s"] < TARGET_S,
        },
        "memory_gb": {
            "value": round(default["peak_rss_gb"], 2),
            "target": f"< {TARGET_GB}",
            "pass": default["peak_rss_gb"] < TARGET_GB,
        },
    }
    payload: dict[str, Any] = {
        "shape": shape,
        "cells": n_cells,
        "spacing": SPACING,
        "quick": args.quick,
        "pipelines": results,
        "target": verdict,
    }
    if not args.no_reference:
        print("reference steps (SciPy / scikit-image) …", flush=True)
        ref = reference(prob, configs["default (h_maxima + average)"])
        payload["reference"] = ref
        print(
            C.table(
                [[k, v["bioseg_s"], v.get("scipy_s", v.get("skimage_s")), v["speedup"]] for k, v in ref.items()],
                ["step", "bioseg (s)", "reference (s)", "speed-up"],
            )
        )
        print(
            f"distance max |diff| {ref['distance']['max_abs_diff']:.2e}; "
            f"h-maxima seeds identical: {ref['h_maxima']['identical_seeds']}; "
            f"watershed voxels agreeing: {ref['watershed']['voxels_agreeing']:.4f}"
        )
    payload["ru_maxrss_gb_whole_run"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"target: {verdict['time_s']['value']} s (< {TARGET_S}: {verdict['time_s']['pass']}), "
        f"{verdict['memory_gb']['value']} GB (< {TARGET_GB}: {verdict['memory_gb']['pass']})"
    )
    path = C.write_result("instances", payload, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
