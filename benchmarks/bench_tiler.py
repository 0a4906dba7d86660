"""Benchmark: bioseg's sliding window against MONAI's ``sliding_window_inference``, the forward pass held equal.

Both tilers call the same function for every batch of tiles: bioseg's fast forward (BatchNorm folded into
the convolutions, channels-last tiles, bf16 autocast when asked) of the default 2D UNet, returning
``{head: logits}``. So what differs is only the tiling: cutting tiles, batching them, weighting by the
Gaussian window and adding them up. The image is 2048² (``--quick``: 1024²), patch 256, overlap 0.25,
Gaussian blending (sigma 0.125 of the patch, MONAI's), 4 tiles per forward pass. Rounds are interleaved
(MONAI, bioseg, per precision); ratios are medians over rounds of MONAI time / bioseg time. The outputs
are compared too: the network is trained for a few seconds first, and the labels of the two are scored
against each other (the tilers place their tiles differently where the image is not a whole number of
strides, and a UNet's output depends on its tile's context).

    python benchmarks/bench_tiler.py [--quick] [--rounds 3]
"""

from __future__ import annotations

import sys
import time
from typing import Any

import _common as C
import numpy as np
import torch
from bench_prediction import dice, make_experiment, test_image, train_weights


def _monai(forward: Any, x: torch.Tensor, patch: list[int], batch: int, overlap: float) -> torch.Tensor:
    from monai.inferers import sliding_window_inference

    with torch.inference_mode():
        out = sliding_window_inference(
            x[None], patch, batch, forward, overlap=overlap, mode="gaussian", sigma_scale=0.125
        )
    return out["mask"][0]


def _bioseg(forward: Any, x: torch.Tensor, patch: list[int], batch: int, overlap: float, divisor: Any) -> Any:
    from bioseg.inference.tiling import sliding_window

    with torch.inference_mode():
        out = sliding_window(
            forward, x, patch, overlap=overlap, blending="gaussian", batch_size=batch, size_divisor=divisor
        )
    return out["mask"]


def run(args: Any, log: Any = print) -> dict[str, Any]:
    from bioseg.inference.predictor import Predictor
    from bioseg.nn.bundle import build_network

    patch, overlap, batch = [256, 256], 0.25, 4
    cfg = make_experiment(2, patch, overlap=overlap, batch_size=batch, blending="gaussian")
    torch.manual_seed(0)
    net = build_network(cfg)
    train_weights(net, args.train_steps)  # a few seconds on synthetic cells, so that labels mean something
    net.eval()
    image, _ = test_image(args.size)
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    outputs: dict[str, torch.Tensor] = {}
    runs = {}
    for precision in ("fp32", "bf16"):
        forward = Predictor(net, cfg, precision=precision)._forward  # the fast path, shared by both tilers
        for name, tiler in (
            (f"monai_{precision}", lambda f=forward: _monai(f, x, patch, batch, overlap)),
            (f"bioseg_{precision}", lambda f=forward: _bioseg(f, x, patch, batch, overlap, net.size_divisor)),
        ):

            def timed(name: str = name, tiler: Any = tiler) -> float:
                start = time.perf_counter()
                outputs[name] = tiler()
                return time.perf_counter() - start

            runs[name] = timed
    log(f"image {args.size}², patch 256, overlap 0.25, gaussian, 4 tiles per pass; warm-up round first")
    times = C.interleave(runs, repeats=args.rounds, warmup=1, log=log)
    result: dict[str, Any] = {"image": [args.size, args.size], "seconds": {}, "speed": {}, "max_abs_diff": {}}
    for precision in ("fp32", "bf16"):
        m, b = times[f"monai_{precision}"], times[f"bioseg_{precision}"]
        result["seconds"][f"monai_{precision}"] = {"median": C.median(m), "all": m}
        result["seconds"][f"bioseg_{precision}"] = {"median": C.median(b), "all": b}
        ratios = C.paired_ratios(m, b)
        result["speed"][precision] = {"monai_over_bioseg": C.median(ratios), "spread": C.spread(ratios)}
        a, b = outputs[f"monai_{precision}"].float(), outputs[f"bioseg_{precision}"].float()
        result["max_abs_diff"][precision] = float((a - b).abs().max())
        # the two place their tiles differently where the image is not a whole number of strides: the
        # blend differs there; what matters is whether the labels do
        result.setdefault("pixels_differing_over_0.1", {})[precision] = float(((a - b).abs() > 0.1).float().mean())
        result.setdefault("label_dice", {})[precision] = dice((a > 0).numpy(), (b > 0).numpy())
    return result


def main(argv: list[str] | None = None) -> int:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--train-steps", type=int, default=60)
    args = p.parse_args(argv)
    args.size = 1024 if args.quick else 2048
    C.setup_threads(args.threads)
    result = {"machine": C.machine(), **run(args)}
    seconds, speed, diff = result["seconds"], result["speed"], result["max_abs_diff"]
    rows = [
        [p, seconds[f"monai_{p}"]["median"], seconds[f"bioseg_{p}"]["median"], speed[p]["monai_over_bioseg"], diff[p],
         result["pixels_differing_over_0.1"][p], result["label_dice"][p]]
        for p in ("fp32", "bf16")
    ]  # fmt: skip
    print()
    print(C.table(rows, ["forward", "MONAI s", "bioseg s", "MONAI / bioseg", "max |Δ logits|", "share |Δ| > 0.1",
                         "label Dice"]))  # fmt: skip
    path = C.write_result("tiler", result, args.out)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
