"""GPU benchmark: ResNet-18 through the backend's training step against a bare PyTorch loop.

    .venv/bin/python bench/gpu.py [--batch-size 256] [--size 64] [--steps 40] [--gpus N] [--tiny]

On a synthetic 3-channel dataset (--size square, 8 batches, written to a temporary folder) and the
built-in ResNet-18, each case warms up, then times --steps training steps (forward, backward,
optimizer), synchronising the device, and reports images/s and, through NVML, the GPU's mean
utilisation while it ran:

  bare fp32            a hand-written loop: the same model, batches gathered on the GPU, SGD
  bare fp32 channels-last / bare bf16 channels-last / bare compile (torch.compile)
  backend fp32         training.torch.loop._Run._step: the job's own step (amp off; data on the GPU;
                       channels-last and cuDNN autotuning as the backend always does on CUDA)
  backend bf16         the same with amp=bf16
  backend bf16, map    the same with the data forced onto the memory map (gathered on the host, copied)
  backend bf16, memory / map, prefetched
                       host data gathered ahead on the Prefetcher's thread into pinned memory, copied
                       with non_blocking (the job's loop plans each epoch's batches the same way)
  backend bf16 compile the job's `compile`: torch.compile through the backend (skipped, with the
                       reason, when compilation fails and the backend falls back to eager)
Ratios: bf16 / fp32 (target >= 1.8), GPU-resident / map (>= 1.3), backend / bare of the same
setting (>= 0.97), prefetched host data against GPU-resident (>= 0.9) and against the map
gathered per step (>= 1.0), compile / eager (>= 1.0), and GPU utilisation at batch 256 (> 90%). With several GPUs it also runs
DDP scaling from 1 to N (whole jobs through the backend, `devices`, the per-GPU batch held at
--batch-size, so the job's batch grows with N): images/s of each and the efficiency, N=1 rate times
N against the N-GPU rate (target >= 0.9 on NVLink). Without several GPUs it runs the same thing as 1
and 2 gloo processes on the CPU, which checks the path and says it is not a GPU figure.

On a machine without CUDA it runs the fp32 and bf16 cases and the map with and without prefetching
on the CPU, small (size 32, batch 32, 10 steps), and says plainly what it skipped. It must finish in under 8 minutes on one GPU.
--tiny: every case the machine allows at 16x16, batch 4, 2 steps, one epoch per DDP job (not the
accumulate one), one torch thread: a check that the benchmark still works (tests/bench), not a figure.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "workbench.settings")
os.environ.setdefault("WORKBENCH_DATA_DIR", tempfile.mkdtemp(prefix="wb-bench-gpu-"))

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from networks.builtin import builtin_spec  # noqa: E402
from training.contract import SilentReporter, TrainingPlan  # noqa: E402
from training.torch.build import build_model  # noqa: E402
from training.torch.loop import _Run  # noqa: E402
from training.torch.precision import cpu_has_bf16  # noqa: E402
from training.torch.run import train  # noqa: E402


class Utilisation(threading.Thread):
    """The GPU's utilisation through NVML, sampled every 50 ms while a case runs (None without NVML)."""

    def __init__(self, index: int) -> None:
        super().__init__(daemon=True)
        self.index, self.samples, self.done = index, [], threading.Event()

    def run(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            while not self.done.wait(0.05):
                self.samples.append(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except Exception:
            self.samples = []

    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def write_dataset(folder: Path, size: int, count: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", count), ("val", 16)):
        np.save(folder / f"{split}_images.npy", rng.integers(0, 256, size=(n, 3, size, size), dtype=np.uint8))
        np.save(folder / f"{split}_labels.npy", rng.integers(0, 10, size=n).astype(np.int64))
    np.save(folder / "mean.npy", np.load(folder / "train_images.npy").mean(axis=0).astype(np.float32))


def plan_for(folder: Path, args: argparse.Namespace, device: str, **fields: object) -> TrainingPlan:
    shape = (3, args.size, args.size)
    plan = TrainingPlan(job_id=0, output_folder=folder / "out", dataset_folder=folder, input_shape=shape,
                        classes=[str(i) for i in range(10)], network_spec=builtin_spec("resnet18", shape, 10),
                        epochs=1, batch_size=args.batch_size, optimizer="sgd", learning_rate=0.01, momentum=0.9,
                        weight_decay=0.0, lr_policy="fixed", lr_params={}, seed=0, device=device,
                        val_interval=1.0, snapshot_interval=1.0)
    return replace(plan, **fields)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[int], None], device: torch.device, steps: int,
          warmup: int = 5) -> tuple[float, float | None]:
    """Seconds per step (after the warm-up steps) and the GPU's mean utilisation meanwhile."""
    for i in range(warmup):
        step(i)
    sync(device)
    meter = Utilisation(device.index or 0) if device.type == "cuda" else None
    if meter:
        meter.start()
    started = time.perf_counter()
    for i in range(steps):
        step(i)
    sync(device)
    seconds = (time.perf_counter() - started) / steps
    if meter:
        meter.done.set()
        meter.join()
    return seconds, meter.mean() if meter else None


def bare_step(folder: Path, args: argparse.Namespace, device: torch.device, *, amp: str = "off",
              channels_last: bool = False, compile_: bool = False) -> Callable[[int], None]:
    """The loop a user would write, with the data already on the device."""
    shape = (3, args.size, args.size)
    torch.manual_seed(0)
    model = build_model(builtin_spec("resnet18", shape, 10), shape, 10).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    forward = torch.compile(model) if compile_ else model
    images = torch.from_numpy(np.load(folder / "train_images.npy")).to(device)
    labels = torch.from_numpy(np.load(folder / "train_labels.npy")).to(device)
    mean = torch.from_numpy(np.load(folder / "mean.npy")).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    batches = len(labels) // args.batch_size

    def step(i: int) -> None:
        index = torch.arange((i % batches) * args.batch_size, (i % batches + 1) * args.batch_size, device=device)
        x = (images[index].float() - mean) / 255.0
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            loss = loss_fn(forward(x), labels[index])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


class Lines(SilentReporter):
    """Keeps the log: a compile that fell back to eager says why there."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)


def backend_run(folder: Path, args: argparse.Namespace, device: torch.device, *, prefetch: bool = False,
                **fields: object) -> tuple[Callable[[int], None], _Run]:
    """The job's own step; with `prefetch`, the batches timed() will ask for are planned ahead, as an epoch's are."""
    run = _Run(plan_for(folder, args, str(device), **fields), Lines(), device)  # type: ignore[arg-type]
    batches = len(run.train_split) // args.batch_size

    def index(i: int) -> torch.Tensor:
        return torch.arange((i % batches) * args.batch_size, (i % batches + 1) * args.batch_size)

    if prefetch:
        run.batches.plan([index(i) for i in [*range(5), *range(args.steps)]])  # timed(): 5 warm-up steps, then --steps
    return lambda i: run._step(index(i), args.batch_size, i % batches), run


def backend_step(folder: Path, args: argparse.Namespace, device: torch.device, **fields: object) -> Callable[[int], None]:
    return backend_run(folder, args, device, **fields)[0]


def compile_case(case: Callable[[str, Callable[[int], None]], None], step: Callable[[int], None], run: _Run) -> None:
    """The job's `compile` through the backend; said as skipped when it fell back to eager (or failed outright)."""
    name = "backend bf16 compile"
    started = time.perf_counter()
    try:
        step(0)  # the first step compiles (or falls back): timed apart
    except Exception as exc:
        print(f"  {name:32s} skipped: {type(exc).__name__}: {exc}")
        return
    if not run.compiled.compiled:
        why = next((line for line in getattr(run.reporter, "lines", []) if "torch.compile" in line), "torch.compile fell back to eager")
        print(f"  {name:32s} skipped: {why}")
        return
    print(f"  {name:32s} first step (compilation) {time.perf_counter() - started:.1f} s")
    case(name, step)


def report(name: str, seconds: float, utilisation: float | None, batch: int) -> float:
    rate = batch / seconds
    gpu = f"   GPU {utilisation:5.1f}%" if utilisation is not None else ""
    print(f"  {name:32s} {rate:9.1f} images/s{gpu}", flush=True)
    return rate


def ratio(label: str, value: float, target: float) -> None:
    print(f"  {label:52s} {value:5.2f}x   target {target:.2f}   {'PASS' if value >= target else 'MISS'}")


class Clock(SilentReporter):
    """Keeps when each step was reported: a whole job's throughput, its start-up left out."""

    def __init__(self) -> None:
        self.steps: list[tuple[float, int]] = []

    def progress(self, *, epoch: float, step: int, total_steps: int) -> None:
        self.steps.append((time.perf_counter(), step))


def job_rate(folder: Path, args: argparse.Namespace, devices: tuple[str, ...], epochs: int, accumulate: int = 1) -> float:
    """Images/s of a whole job on `devices` (one process each when several), over its second half."""
    batch = args.batch_size * len(devices)
    plan = plan_for(folder, args, devices[0], devices=devices if len(devices) > 1 else (), batch_size=batch,
                    epochs=epochs, val_interval=1000.0, snapshot_interval=1000.0, amp="bf16" if devices[0] != "cpu"
                    else "off", accumulate=accumulate, output_folder=folder / f"out-{len(devices)}-{accumulate}")
    clock = Clock()
    train(plan, clock)
    (t0, s0), (t1, s1) = clock.steps[len(clock.steps) // 2], clock.steps[-1]
    return (s1 - s0) * batch / (t1 - t0)


def job_epochs(args: argparse.Namespace, n: int) -> int:
    return 1 if args.tiny else max(2, 2 * n * args.steps // 8)


def ddp_scaling(folder: Path, args: argparse.Namespace, gpus: int) -> None:
    """1 to N devices, the per-device batch fixed; the CPU's gloo pair stands in without several GPUs."""
    if gpus > 1:
        counts, kind = sorted({1, 2, gpus} | ({4} if gpus >= 4 else set())), "cuda"
        print(f"DDP scaling, whole jobs (bf16, per-GPU batch {args.batch_size}):")
    else:
        counts, kind = [1, 2], "cpu"
        print(f"DDP on {'one GPU: no scaling to measure; ' if gpus == 1 else ''}the same path as 1 and 2 gloo "
              f"processes on the CPU ({os.cpu_count()} cores; a check of the path, not a GPU figure):")
    rates = {}
    for n in counts:
        devices = tuple(f"cuda:{i}" for i in range(n)) if kind == "cuda" else ("cpu",) * n
        rates[n] = job_rate(folder, args, devices, epochs=job_epochs(args, n))
        print(f"  {n} {'GPU' if kind == 'cuda' else 'process'}{'es' if kind == 'cpu' and n > 1 else ''}"
              f"{'s' if kind == 'cuda' and n > 1 else ''}: {rates[n]:10.1f} images/s", flush=True)
    for n in counts[1:]:
        efficiency = rates[n] / (n * rates[1])
        if kind == "cuda":
            ratio(f"DDP efficiency, {n} GPUs", efficiency, 0.9)
        else:
            print(f"  efficiency, {n} gloo processes on {os.cpu_count()} cores: {efficiency:.2f} (not a GPU figure)")
    n = counts[-1]
    if args.tiny:
        print(f"  accumulate 4 on {n}: skipped (--tiny)")
        return
    devices = tuple(f"cuda:{i}" for i in range(n)) if kind == "cuda" else ("cpu",) * n
    accumulated = job_rate(folder, args, devices, epochs=job_epochs(args, n), accumulate=4)
    print(f"  accumulate 4 on {n}: {accumulated:10.1f} images/s, {accumulated / rates[n]:.2f}x accumulate 1 (one "
          "all-reduce and one optimizer step per 4 batches; DDP's no_sync before the last)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--gpus", type=int, default=None, help="how many GPUs to use for DDP scaling (default: all)")
    parser.add_argument("--tiny", action="store_true", help="seconds, not a figure: a check that it still runs")
    args = parser.parse_args()
    if args.tiny:
        args.batch_size, args.size, args.steps = 4, 16, 2
        torch.set_num_threads(1)  # two threads on a busy 2-core machine run 5-10x slower than one
    cuda = torch.cuda.is_available()
    if not cuda:
        args.batch_size, args.size, args.steps = min(args.batch_size, 32), min(args.size, 32), min(args.steps, 10)
        print("No CUDA device here: the fp32 and bf16 cases and the map with and without prefetching run on the "
              "CPU, small (ResNet-18, "
              f"{args.size}x{args.size}, batch {args.batch_size}, {args.steps} steps).")
        print("Skipped: GPU-resident data against the memory map and pinned prefetching on a GPU, channels-last, "
              "torch.compile (bare and through the backend: no GPU), GPU utilisation, DDP scaling on GPUs "
              "(gloo processes on the CPU check the DDP path instead).")
    device = torch.device("cuda:0" if cuda else "cpu")
    print(f"device: {torch.cuda.get_device_name(0) if cuda else 'CPU'}; torch {torch.__version__}", flush=True)
    with tempfile.TemporaryDirectory(prefix="wb-bench-gpu-data-") as tmp:
        folder = Path(tmp)
        write_dataset(folder, args.size, 8 * args.batch_size)
        rates, gpu = {}, {}

        def case(name: str, step: Callable[[int], None]) -> None:
            seconds, util = timed(step, device, args.steps, warmup=1 if args.tiny else 5)
            rates[name], gpu[name] = report(name, seconds, util, args.batch_size), util

        case("bare fp32", bare_step(folder, args, device))
        case("backend fp32", backend_step(folder, args, device))
        bf16 = cuda or cpu_has_bf16()
        if bf16:
            case("bare bf16", bare_step(folder, args, device, amp="bf16", channels_last=cuda))
            case("backend bf16", backend_step(folder, args, device, amp="bf16"))
        else:
            print(f"  bf16 skipped: this CPU has no bfloat16 instructions ({torch.backends.cpu.get_cpu_capability()}); "
                  "torch emulates it, far slower than fp32")
        host = "bf16" if cuda else "fp32"
        case(f"backend {host}, data on the map", backend_step(folder, args, device, amp=host, data_placement="map"))
        for where in ("memory", "map") if cuda else ("map",):
            step, run = backend_run(folder, args, device, prefetch=True, amp=host, data_placement=where)
            case(f"backend {host}, {where}, prefetched", step)
            run.batches.close()
        if cuda:
            case("bare fp32 channels-last", bare_step(folder, args, device, channels_last=True))
            compile_case(case, *backend_run(folder, args, device, amp="bf16", compile=True))
            try:
                case("bare bf16 compile", bare_step(folder, args, device, amp="bf16", channels_last=True, compile_=True))
            except Exception as exc:  # a compiler the machine lacks: said, not fatal
                print(f"  bare bf16 compile            skipped: torch.compile failed ({type(exc).__name__}: {exc})")
        print("ratios:")
        ratio("backend / bare, fp32", rates["backend fp32"] / rates["bare fp32"], 0.97)
        if bf16:
            ratio("bf16 / fp32 (backend)", rates["backend bf16"] / rates["backend fp32"], 1.8)
            ratio("backend / bare, bf16", rates["backend bf16"] / rates["bare bf16"], 0.97)
        ratio(f"map prefetched / map per step (backend {host})",
              rates[f"backend {host}, map, prefetched"] / rates[f"backend {host}, data on the map"], 1.0)
        if cuda:
            ratio("GPU-resident / memory map (backend bf16)",
                  rates["backend bf16"] / rates["backend bf16, data on the map"], 1.3)
            for where in ("memory", "map"):
                ratio(f"{where} prefetched, pinned / GPU-resident (backend bf16)",
                      rates[f"backend bf16, {where}, prefetched"] / rates["backend bf16"], 0.9)
            if "backend bf16 compile" in rates:
                ratio("compile / eager (backend bf16)", rates["backend bf16 compile"] / rates["backend bf16"], 1.0)
            if gpu["backend fp32"] is not None:
                print(f"  GPU utilisation, backend fp32 at batch {args.batch_size}: {gpu['backend fp32']:.1f}% "
                      f"(target > 90%)")
        ddp_scaling(folder, args, (args.gpus or torch.cuda.device_count()) if cuda else 0)


if __name__ == "__main__":
    main()
