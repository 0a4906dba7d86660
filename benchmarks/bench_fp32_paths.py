"""Benchmark: what makes fp32 prediction fast — candidate runtimes for the network's forward pass.

Where the CPU has no native bf16, prediction runs in fp32, and the forward pass is nearly all of its time
(a 2048² image with auto tiles: 2.7 s of 2.9 s). This times one forward pass of the default 2D UNet
(trained for a few steps, see bench_prediction) on the tile the auto plan gives a 2048² image and on a
batch of four 256² tiles, for each candidate, interleaved:

- ``eager``: the network with BatchNorm folded into the convolutions, channels-last, as torch runs it;
- ``fused``: what bioseg runs, that network with oneDNN fusions (``bioseg.inference.fast_net``: each
  convolution with its activation, decoder blocks without the concatenation);
- ``compiled``: ``torch.compile`` of the eager network (inductor, ``freezing`` on so that weights are
  constants and oneDNN convolutions are prepacked and fused with their activations; static shapes);
- ``onnxruntime``: the same network exported with torch's dynamo exporter, run by ONNX Runtime's CPU
  provider, as many threads as torch uses;
- ``eager_bf16``: bf16 autocast, for reference (fast only where bf16 is native).

Then the whole 2048² image in fp32 with auto tiles, fused (bioseg's default), eager and compiled, and fused
with larger auto tiles (a budget of 8 and 16 tiles of 256² per pass instead of 4), against MONAI's
``sliding_window_inference`` fp32 (patch 256, overlap 0.25, Gaussian) in the same rounds. Reported with
the one-off costs (compiling, exporting) and the largest difference from eager outputs.

    python benchmarks/bench_fp32_paths.py [--rounds 5] [--train-steps 40]

Run it with ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI`` on a CPU with native bf16 to see it as one without:
oneDNN then leaves the bf16 instructions unused (bf16 2-3× slower than fp32) and fp32 is unchanged.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as C
import torch
from bench_prediction import make_experiment, monai_predict, test_image, train_weights

IMAGE = 2048


class FirstHead(torch.nn.Module):
    """The network with one tensor out, as exporters and compilers want it."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["mask"]


def compiled(net: torch.nn.Module) -> tuple[Any, float]:
    import torch._inductor.config as inductor

    inductor.freezing = True
    start = time.perf_counter()
    fn = torch.compile(FirstHead(net), dynamic=False)
    return fn, time.perf_counter() - start  # compiling itself happens at the first call of each shape


def onnx_session(net: torch.nn.Module, example: torch.Tensor) -> tuple[Any, float]:
    import onnxruntime as ort

    path = Path(tempfile.mkdtemp(prefix="bioseg-bench-")) / "net.onnx"
    start = time.perf_counter()
    dims = {0: torch.export.Dim("n"), 2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO}
    torch.onnx.export(FirstHead(net), (example.contiguous(),), str(path), dynamo=True, input_names=["x"],
                      dynamic_shapes={"x": dims}, verbose=False)  # fmt: skip
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    # ONNX Runtime's threads spin after a run by default: that would slow whatever runs next in a round
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session, time.perf_counter() - start


def running(predictor: Any, net: Any) -> Any:
    """``predictor`` with ``net`` running its tiles in place of the network it built."""
    from bioseg.inference.ensemble import Member

    predictor._fast_net = net
    predictor.members[0] = Member(net, predictor.members[0].temperature)
    return predictor


def untimed(fn: Any) -> Any:
    """``fn`` for :func:`_common.interleave`, which times a run that returns None."""

    def run() -> None:
        fn()

    return run


def main() -> int:
    parser = C.parser(__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=40)
    args = parser.parse_args()
    C.setup_threads(args.threads)
    from bioseg.inference.fast_net import fold_batchnorm, fuse_onednn
    from bioseg.inference.predictor import Predictor
    from bioseg.inference.tile_plan import plan_tiles
    from bioseg.nn.bundle import build_network

    cfg = make_experiment(2, [256, 256], patch_size="auto", overlap=0.25, batch_size=4, blending="gaussian")
    torch.manual_seed(0)
    net = build_network(cfg)
    train_weights(net, args.train_steps)
    fast = fold_batchnorm(net).to(memory_format=torch.channels_last)
    fused = fuse_onednn(fast, 2)
    plan = plan_tiles((IMAGE, IMAGE), (256, 256), 0.25, 4, net.size_divisor)
    shapes = {"auto tile": (plan.batch_size, 1, *plan.patch), "4 × 256²": (4, 1, 256, 256)}
    inputs = {k: torch.randn(s).contiguous(memory_format=torch.channels_last) for k, s in shapes.items()}

    comp, _ = compiled(fast)
    session, export_s = onnx_session(fast, inputs["4 × 256²"])
    one_off: dict[str, float] = {"onnx_export_s": round(export_s, 2)}
    differences: dict[str, float] = {}
    with torch.inference_mode():
        for name, x in inputs.items():
            start = time.perf_counter()
            comp(x)
            one_off[f"compile_s ({name})"] = round(time.perf_counter() - start, 2)
            ref = fast(x)["mask"]
            differences[f"fused ({name})"] = float((fused(x)["mask"] - ref).abs().max())
            differences[f"compiled ({name})"] = float((comp(x) - ref).abs().max())
            ort_out = torch.from_numpy(session.run(None, {"x": x.contiguous().numpy()})[0])
            differences[f"onnxruntime ({name})"] = float((ort_out - ref).abs().max())

    def bf16(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fast(x)["mask"]

    candidates = {
        "eager": lambda x: fast(x)["mask"],
        "fused": lambda x: fused(x)["mask"],
        "compiled": comp,
        "onnxruntime": lambda x: session.run(None, {"x": x.contiguous().numpy()}),
        "eager_bf16": bf16,
    }
    forward: dict[str, Any] = {}
    for shape_name, x in inputs.items():
        def on_input(fn: Any, x: torch.Tensor = x) -> Any:
            return untimed(lambda: fn(x))

        with torch.inference_mode():
            times = C.interleave({k: on_input(fn) for k, fn in candidates.items()}, repeats=args.rounds, warmup=1)
        forward[shape_name] = {
            k: {"median_ms": round(1000 * C.median(t), 1),
                "speed_vs_eager": C.median(C.paired_ratios(times["eager"], t))}
            for k, t in times.items()
        }  # fmt: skip

    image, _ = test_image(IMAGE)
    fused_predictor = Predictor(net, cfg, precision="fp32")
    eager_predictor = running(Predictor(net, cfg, precision="fp32"), fast)
    compiled_predictor = running(Predictor(net, cfg, precision="fp32"), torch.compile(fast, dynamic=False))
    compiled_predictor.predict_prepared(image)  # compiles for the plan's tile
    # larger auto tiles (a budget of 8 and 16 tiles of 256² per pass): fewer pixels computed, each dearer?
    budget = {n: Predictor(net, cfg, precision="fp32", batch_size=n) for n in (8, 16)}
    for predictor in budget.values():
        predictor.predict_prepared(image[:, :512, :512])
    eager_predictor.predict_prepared(image[:, :512, :512])
    fused_predictor.predict_prepared(image[:, :512, :512])
    monai_predict(net, image[:, :512, :512], [256, 256], 4, 0.25)
    whole = C.interleave({
        "monai_fp32": untimed(lambda: monai_predict(net, image, [256, 256], 4, 0.25)),
        "bioseg_fp32_auto_tiles": untimed(lambda: fused_predictor.predict_prepared(image)),
        "bioseg_fp32_auto_tiles_unfused": untimed(lambda: eager_predictor.predict_prepared(image)),
        "bioseg_fp32_auto_tiles_compiled": untimed(lambda: compiled_predictor.predict_prepared(image)),
        **{f"bioseg_fp32_auto_tiles_budget_{n}": untimed(lambda p=p: p.predict_prepared(image))
           for n, p in budget.items()},
    }, repeats=args.rounds, warmup=0)  # fmt: skip
    budget_plans = {n: plan_tiles((IMAGE, IMAGE), (256, 256), 0.25, n, net.size_divisor) for n in (4, 8, 16)}
    image_result = {
        k: {"median_s": round(C.median(t), 3), "speed_vs_monai_fp32": C.median(C.paired_ratios(whole["monai_fp32"], t))}
        for k, t in whole.items()
    }  # fmt: skip
    doc = {
        "machine": C.machine(),
        "network": "default 2D UNet (16-32-64-128, batch norm folded), one binary head",
        "fused_blocks": sum(type(m).__name__ == "FusedConvBlock" for m in fused.modules()),
        "tiles": {k: list(s) for k, s in shapes.items()},
        "auto_tiles_by_budget": {
            n: {"patch": list(p.patch), "pixels_computed_per_pixel": p.computed((IMAGE, IMAGE), net.size_divisor)}
            for n, p in budget_plans.items()
        },
        "forward": forward,
        "one_off": one_off,
        "max_abs_logit_difference_vs_eager": differences,
        "image_2048": image_result,
    }
    rows = [[shape, name, v["median_ms"], f"{v['speed_vs_eager']:.2f}×"]
            for shape, by in forward.items() for name, v in by.items()]  # fmt: skip
    print(C.table(rows, ["tile", "runtime", "ms per pass", "vs eager"]))
    print(C.table([[k, v["median_s"], f"{v['speed_vs_monai_fp32']:.2f}×"] for k, v in image_result.items()],
                  ["2048² image", "seconds", "vs MONAI fp32"]))  # fmt: skip
    print("one-off:", one_off)
    C.write_result("fp32_paths", doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
