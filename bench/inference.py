"""Inference benchmark: torch eager against its TorchScript and ONNX Runtime exports, in one run.

    .venv/bin/python bench/inference.py [--threads 2] [--networks lenet,resnet18] [--repeat 200]
                                        [--batch-sizes 1,8,32,128] [--seconds 1.0] [--tiny]

Trains nothing. For LeNet on 1x28x28 and ResNet-18 on 3x32x32 (the built-in specs, 10 classes,
seeded random weights and a random mean image) it writes a snapshot folder as a training job would,
exports it with the workbench's own export code (training.torch.export: TorchScript and ONNX,
each checked against torch on sample inputs), then measures, with the same thread count for all:
  eager        the torch model with the mean subtraction in front, under torch.inference_mode()
  torchscript  the exported .pt, torch.jit.load + torch.jit.optimize_for_inference
  onnxruntime  the exported .onnx, CPUExecutionProvider, intra_op_num_threads = --threads
Latency: one image per call, median of --repeat calls after a warm-up. Throughput: images/s at
each batch size, from the median time of at least 5 calls (about --seconds per runtime and cell).
The runtimes take turns call by call, so load from elsewhere on the machine hits all of them alike.
Prints the figures and each runtime's ratio to eager (above 1 is faster than eager).
--tiny: LeNet only, a few calls, batch sizes 1 and 8, one thread (exports and their checks as
always): a check that the benchmark still works (tests/bench), not a figure.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from networks.builtin import builtin_spec  # noqa: E402
from training.torch.export import Preprocessed, export_snapshot  # noqa: E402
from training.torch.models import load_snapshot  # noqa: E402

SHAPES = {"lenet": (1, 28, 28), "resnet18": (3, 32, 32)}
RUNTIMES = ("eager", "torchscript", "onnxruntime")
Run = Callable[[np.ndarray], object]


def snapshot_folder(folder: Path, network: str, shape: tuple[int, int, int], classes: int = 10) -> Path:
    """A job folder as training leaves it: model.json, mean.safetensors, one seeded random snapshot."""
    from training.torch.build import build_model

    torch.manual_seed(0)
    spec = builtin_spec(network, shape, classes)
    model = build_model(spec, shape, classes)
    (folder / "snapshots").mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps({
        "network_spec": spec, "input_shape": list(shape), "classes": [f"c{i}" for i in range(classes)],
        "preprocessing": {"width": shape[2], "height": shape[1], "channels": shape[0], "resize_mode": "squash",
                          "mean_file": "mean.safetensors", "scale": 1 / 255}}))
    save_file({"mean": torch.rand(shape) * 255}, folder / "mean.safetensors")
    weights = folder / "snapshots" / "epoch_1.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    return weights


def runtimes(weights: Path, out: Path, threads: int) -> tuple[dict[str, Run], dict[str, float]]:
    """Each runtime as a function of float32 pixels, and the exports' checked differences from torch."""
    diffs = {}
    for fmt, ext in (("torchscript", "pt"), ("onnx", "onnx")):
        diffs[fmt] = export_snapshot(weights, fmt, out / f"model.{ext}")["max_abs_diff"]
    eager = Preprocessed(*load_snapshot(weights)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.load(str(out / "model.pt")).eval()
        try:
            scripted = torch.jit.optimize_for_inference(scripted)
        except Exception as exc:  # noqa: BLE001 - fall back to the plain module, and say so
            print(f"  (optimize_for_inference failed: {exc}; timing the plain TorchScript module)")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), options, providers=["CPUExecutionProvider"])

    def torch_run(model: torch.nn.Module) -> Run:
        def run(x: np.ndarray) -> object:
            with torch.inference_mode():
                return model(torch.from_numpy(x))
        return run

    return {"eager": torch_run(eager), "torchscript": torch_run(scripted),
            "onnxruntime": lambda x: session.run(["logits"], {"input": x})}, diffs


def medians(runs: dict[str, Run], x: np.ndarray, *, rounds: int, budget: float) -> dict[str, float]:
    """Median seconds per call of each runtime on `x`. The runtimes take turns call by call, so a
    busy moment on the machine slows all of them alike and the ratios stay fair."""
    for run in runs.values():
        for _ in range(5):  # warm-up: TorchScript's profiling executor optimises on the first calls
            run(x)
    times: dict[str, list[float]] = {name: [] for name in runs}
    deadline = time.perf_counter() + budget
    done = 0
    while done < rounds or (done < 3 * rounds and time.perf_counter() < deadline):
        for name, run in runs.items():
            start = time.perf_counter()
            run(x)
            times[name].append(time.perf_counter() - start)
        done += 1
        if done >= rounds and time.perf_counter() >= deadline:
            break
    return {name: statistics.median(values) for name, values in times.items()}


def measure(runs: dict[str, Run], shape: tuple[int, ...], batch_sizes: list[int], repeat: int,
            seconds: float) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(0)
    figures: dict[str, dict[str, float]] = {name: {} for name in runs}
    one = rng.integers(0, 256, size=(1, *shape)).astype(np.float32)
    for name, value in medians(runs, one, rounds=repeat, budget=0).items():
        figures[name]["latency_ms"] = value * 1000
    for size in batch_sizes:
        batch = rng.integers(0, 256, size=(size, *shape)).astype(np.float32)
        for name, value in medians(runs, batch, rounds=5, budget=seconds * len(runs)).items():
            figures[name][f"bs{size}"] = size / value
    return figures


def report(network: str, shape: tuple[int, ...], figures: dict[str, dict[str, float]], batch_sizes: list[int],
           diffs: dict[str, float]) -> None:
    print(f"\n{network} {'x'.join(map(str, shape))}  (export max abs diff vs torch: "
          f"TorchScript {diffs['torchscript']:.1e}, ONNX {diffs['onnx']:.1e})")
    header = f"{'runtime':<12} {'latency ms':>10} " + " ".join(f"{f'img/s bs{b}':>12}" for b in batch_sizes)
    print(header)
    print("-" * len(header))
    for name in RUNTIMES:
        f = figures[name]
        print(f"{name:<12} {f['latency_ms']:>10.3f} " + " ".join(f"{f[f'bs{b}']:>12.0f}" for b in batch_sizes))
    base = figures["eager"]
    for name in RUNTIMES[1:]:
        f = figures[name]
        ratios = " ".join(f"{f[f'bs{b}'] / base[f'bs{b}']:>11.2f}x" for b in batch_sizes)
        print(f"{name + ' / eager':<24}{base['latency_ms'] / f['latency_ms']:>0.2f}x " + ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--networks", default="lenet,resnet18")
    parser.add_argument("--repeat", type=int, default=200, help="single-image calls for the latency median")
    parser.add_argument("--batch-sizes", default="1,8,32,128")
    parser.add_argument("--seconds", type=float, default=1.0, help="time budget per throughput cell")
    parser.add_argument("--tiny", action="store_true", help="seconds, not a figure: a check that it still runs")
    args = parser.parse_args()
    if args.tiny:
        args.networks, args.repeat, args.batch_sizes, args.seconds, args.threads = "lenet", 5, "1,8", 0.0, 1
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {args.threads} thread(s) each; "
          "latency = median ms per single image, throughput = images/s; ratios above 1 are faster than eager")
    with tempfile.TemporaryDirectory(prefix="wb-bench-infer-") as tmp:
        for network in args.networks.split(","):
            shape = SHAPES[network]
            folder = Path(tmp) / network
            runs, diffs = runtimes(snapshot_folder(folder, network, shape), folder, args.threads)
            report(network, shape, measure(runs, shape, batch_sizes, args.repeat, args.seconds), batch_sizes, diffs)


if __name__ == "__main__":
    main()
