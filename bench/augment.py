"""Augmentation benchmark: what batched augmentation costs a training step, and how it compares
with augmenting image by image with Pillow.

    .venv/bin/python bench/augment.py [--networks lenet,resnet18] [--seconds 25] [--batch-size 32]
                                      [--threads 2] [--ops-batch-size 64] [--ops-repeat 15]
                                      [--ops-shapes 1x28x28,3x32x32,3x96x96]
                                      [--no-rotation-gain] [--gain-epochs 10] [--tiny]

1. Throughput. For each built-in network (LeNet on 1x28x28 grayscale, ResNet-18 on 3x32x32
   colour; random pixels written as a dataset folder), the real backend's training step
   (`training.torch.loop._Run._step`: batch read, augmentation, mean, forward, backward,
   optimizer step) runs with no augmentation and with every augmentation the images allow
   (flips, rot90, rotation, translation, scale, pad-and-crop, noise; HSV on colour), one step of
   each in turn (so a busy machine slows both alike) for about --seconds per network (at least 5
   of each), in this one process. Prints samples/s of each from the fastest step (the one least
   disturbed by other work on the machine; the median in brackets), the cost of augmentation,
   1 - all-on / none, and the augmentation's own time (fastest of as many calls of `Augmenter`
   on the same batch) as a share of the fastest plain step: the same cost, free of the noise of
   two whole steps. Target: < 15%.
2. Per batch. The same operations on one batch of --ops-batch-size images, batched in torch
   (`training.torch.augment.Augmenter`, uint8 batch in, float batch out) against a per-image
   Pillow implementation (Image.transpose, rotate, transform(AFFINE), ImageOps.expand + crop,
   numpy noise, convert("HSV") shifts; uint8 array in, float tensor out), each op alone and all
   together, for each of --ops-shapes; the fastest of --ops-repeat runs (the least disturbed by
   other work on the machine). Prints the speed-up per-image / batched. Target: >= 5x.
3. Rotation gain (--no-rotation-gain skips it; ~15 s): LeNet trained through the backend on
   scikit-learn's digits (28x28, the example dataset's ingest) for --gain-epochs epochs without
   augmentation and with `rotate_degrees` 25, each scored on the validation split as it is and on
   a copy of it rotated by 25 degrees (Pillow, bilinear, half the images each way).
No assertions: it prints figures; bench/README.md records them. --tiny runs all three parts on
LeNet, 8-image batches of 1x28x28 and 3x32x32, a few steps and one epoch, one torch thread: a
check that the benchmark still works (tests/bench), not a figure.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from networks.builtin import builtin_spec  # noqa: E402
from training.augmentation import augmentation_parse  # noqa: E402
from training.contract import SilentReporter, TrainingPlan  # noqa: E402
from training.torch.augment import Augmenter  # noqa: E402
from training.torch.data import Split  # noqa: E402
from training.torch.loop import _Run  # noqa: E402
from training.torch.models import evaluate, load_snapshot  # noqa: E402
from training.torch.run import train  # noqa: E402

CPU = torch.device("cpu")
SHAPES = {"lenet": (1, 28, 28), "resnet18": (3, 32, 32)}
OPS: dict[str, dict[str, object]] = {
    "flip": {"flip": "both"},
    "rot90": {"rot90": True},
    "rotate+translate+scale": {"rotate_degrees": 20, "translate": 0.1, "scale": [0.9, 1.1]},
    "pad-crop": {"crop_padding": 4},
    "noise": {"noise_std": 0.05},
    "hsv": {"hsv": {"hue": 0.05, "saturation": 0.2, "value": 0.2}},
}


def every_op(channels: int) -> dict[str, object]:
    keys: dict[str, object] = {}
    for name, op in OPS.items():
        if name != "hsv" or channels == 3:
            keys.update(op)
    return keys


def write_dataset(folder: Path, shape: tuple[int, int, int], n: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for split, count in (("train", n), ("val", 8)):
        np.save(folder / f"{split}_images.npy", rng.integers(0, 256, size=(count, *shape), dtype=np.uint8))
        np.save(folder / f"{split}_labels.npy", rng.integers(0, 10, size=count).astype(np.int64))
    np.save(folder / "mean.npy", np.load(folder / "train_images.npy").mean(axis=0).astype(np.float32))


def plan_for(network: str, folder: Path, batch_size: int, augmentation: dict[str, object]) -> TrainingPlan:
    shape = SHAPES[network]
    return TrainingPlan(job_id=0, output_folder=folder / "out", dataset_folder=folder, input_shape=shape,
                        classes=[str(i) for i in range(10)], network_spec=builtin_spec(network, shape, 10),
                        epochs=1, batch_size=batch_size, optimizer="sgd", learning_rate=0.01, momentum=0.9,
                        weight_decay=0.0, lr_policy="fixed", lr_params={}, seed=0, device="cpu", val_interval=1.0,
                        snapshot_interval=1.0, augmentation=augmentation)


def step_seconds(run: _Run, index: torch.Tensor, i: int) -> float:
    started = time.perf_counter()
    run._step(index, len(index), i)
    return time.perf_counter() - started


def throughput(network: str, args: argparse.Namespace, tmp: Path) -> None:
    shape, size = SHAPES[network], args.batch_size
    folder = tmp / network
    write_dataset(folder, shape, 8 * size)
    plans = {"none": plan_for(network, folder, size, {}), "all-on": plan_for(network, folder, size, every_op(shape[0]))}
    runs = {name: _Run(plan, SilentReporter(), CPU) for name, plan in plans.items()}  # type: ignore[arg-type]
    order = torch.randperm(8 * size)
    times: dict[str, list[float]] = {"none": [], "all-on": []}
    started, i = time.perf_counter(), 0
    while i <= 5 or time.perf_counter() - started < args.seconds:
        index = order[(i % 8) * size : (i % 8 + 1) * size]
        for name in (list(runs) if i % 2 else list(runs)[::-1]):
            seconds = step_seconds(runs[name], index, i)
            if i:  # the first is a warm-up: allocations, first-call costs
                times[name].append(seconds)
        i += 1
    none, on = min(times["none"]), min(times["all-on"])
    augment, pixels = runs["all-on"].augment, runs["all-on"].train_split.images[:size]
    share = min(timings(lambda: augment(pixels), len(times["none"]))) / none  # type: ignore[misc]
    medians = {name: size / statistics.median(values) for name, values in times.items()}
    print(f"{network:9s} {'x'.join(map(str, shape)):8s} {len(times['none'])} steps of each: none {size / none:7.1f} "
          f"samples/s ({medians['none']:.1f})   all-on {size / on:7.1f} ({medians['all-on']:.1f})   augmentation "
          f"costs {1 - none / on:6.1%} of throughput; on its own {share:.1%} of a plain step")


# --- per image, with Pillow -------------------------------------------------------------------

def pil_op(name: str, rng: np.random.Generator) -> Callable[[Image.Image], Image.Image | np.ndarray]:
    def flip(img: Image.Image) -> Image.Image:
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return img.transpose(Image.Transpose.FLIP_TOP_BOTTOM) if rng.random() < 0.5 else img

    def rot90(img: Image.Image) -> Image.Image:
        return img.rotate(90 * int(rng.integers(4)))

    def affine(img: Image.Image) -> Image.Image:
        angle, scale = math.radians(rng.uniform(-20, 20)), rng.uniform(0.9, 1.1)
        w, h = img.size
        tx, ty = rng.uniform(-0.1, 0.1) * w, rng.uniform(-0.1, 0.1) * h
        cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
        cx, cy = w / 2 + tx, h / 2 + ty  # output point (x, y) reads input M (p - c) + centre
        coeffs = (cos, sin, w / 2 - cos * cx - sin * cy, -sin, cos, h / 2 + sin * cx - cos * cy)
        return img.transform(img.size, Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR)

    def pad_crop(img: Image.Image) -> Image.Image:
        left, top = (int(v) for v in rng.integers(0, 9, size=2))
        return ImageOps.expand(img, border=4, fill=0).crop((left, top, left + img.size[0], top + img.size[1]))

    def noise(img: Image.Image) -> np.ndarray:
        pixels = np.asarray(img, dtype=np.float32) / 255
        return np.clip(pixels + rng.normal(0, 0.05, pixels.shape).astype(np.float32), 0, 1)

    def hsv(img: Image.Image) -> Image.Image:
        planes = np.asarray(img.convert("HSV"), dtype=np.float32)
        shift = np.array([rng.uniform(-0.05, 0.05), rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2)]) * 255
        planes = planes + shift.astype(np.float32)
        planes[..., 0] %= 256
        return Image.fromarray(np.clip(planes, 0, 255).astype(np.uint8), "HSV").convert("RGB")

    return {"flip": flip, "rot90": rot90, "rotate+translate+scale": affine, "pad-crop": pad_crop, "noise": noise,
            "hsv": hsv}[name]


def pil_batch(images: np.ndarray, ops: list[Callable[[Image.Image], Image.Image | np.ndarray]]) -> torch.Tensor:
    out = []
    for chw in images:
        img: Image.Image | np.ndarray = Image.fromarray(chw[0] if chw.shape[0] == 1 else chw.transpose(1, 2, 0))
        for op in ops:
            img = op(img) if isinstance(img, Image.Image) else op(Image.fromarray((img * 255).astype(np.uint8)))
        pixels = img if isinstance(img, np.ndarray) else np.asarray(img, dtype=np.float32) / 255
        out.append(pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out))


def timings(work: Callable[[], object], repeat: int) -> list[float]:
    work()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return times


def per_batch(shape: tuple[int, ...], args: argparse.Namespace) -> None:
    images = np.random.default_rng(1).integers(0, 256, size=(args.ops_batch_size, *shape), dtype=np.uint8)
    batch = torch.from_numpy(images)
    names = [name for name in OPS if name != "hsv" or shape[0] == 3]
    print(f"\nper batch of {args.ops_batch_size} x {'x'.join(map(str, shape))}: batched torch vs per-image Pillow")
    for label, chosen in [*((name, [name]) for name in names), ("all together", names)]:
        keys: dict[str, object] = {}
        for name in chosen:
            keys.update(OPS[name])
        augment = Augmenter(augmentation_parse(keys, channels=shape[0]), 0, CPU)
        rng = np.random.default_rng(0)
        ops = [pil_op(name, rng) for name in chosen]
        batched = min(timings(lambda: augment(batch), args.ops_repeat))  # noqa: B023
        pillow = min(timings(lambda: pil_batch(images, ops), args.ops_repeat))  # noqa: B023
        print(f"  {label:24s} batched {batched * 1e3:8.2f} ms   per-image {pillow * 1e3:8.2f} ms   "
              f"{pillow / batched:6.1f}x")


def rotation_gain(args: argparse.Namespace, tmp: Path) -> None:
    from datasets.example import write_digits
    from datasets.ingest.pipeline import IngestOptions, run_ingest
    from datasets.ingest.store import open_split

    folder = tmp / "digits"
    write_digits(tmp / "digits-src")
    run_ingest(tmp / "digits-src", folder, IngestOptions(width=28, height=28, channels=1, resize_mode="squash",
               val_percent=20, test_percent=10, seed=42), max_pixels=40_000_000, workers=2)
    images, labels = open_split(folder, "val")
    turned = np.stack([np.asarray(Image.fromarray(image[0]).rotate(25 if i % 2 else -25,
                                                                     resample=Image.Resampling.BILINEAR))[None]
                       for i, image in enumerate(images)])
    print(f"\nLeNet on the digits, {args.gain_epochs} epochs, scored on {len(labels)} validation images:")
    for label, augmentation in (("no augmentation", {}), ("rotate_degrees 25", {"rotate_degrees": 25})):
        plan = replace(plan_for("lenet", folder, 64, augmentation), output_folder=tmp / label,
                       epochs=args.gain_epochs, classes=[str(i) for i in range(10)])
        train(plan, SilentReporter())  # type: ignore[arg-type]
        model, mean = load_snapshot(tmp / label / "snapshots" / f"epoch_{args.gain_epochs}.safetensors")
        scores = [evaluate(model, Split(torch.from_numpy(np.array(x)), torch.from_numpy(labels)),
                           mean, CPU, 256)[1] for x in (images, turned)]
        print(f"  {label:18s} validation {scores[0]:.1%}   rotated by ±25 degrees {scores[1]:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", default="lenet,resnet18")
    parser.add_argument("--seconds", type=float, default=25)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ops-batch-size", type=int, default=64)
    parser.add_argument("--ops-repeat", type=int, default=15)
    parser.add_argument("--ops-shapes", default="1x28x28,3x32x32,3x96x96")
    parser.add_argument("--rotation-gain", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--gain-epochs", type=int, default=10)
    parser.add_argument("--tiny", action="store_true", help="seconds, not a figure: a check that it still runs")
    args = parser.parse_args()
    if args.tiny:
        args.networks, args.seconds, args.batch_size, args.gain_epochs, args.threads = "lenet", 0.0, 8, 1, 1
        args.ops_batch_size, args.ops_repeat, args.ops_shapes = 8, 1, "1x28x28,3x32x32"
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; training batch {args.batch_size}, "
          f"steps of both taken in turn for about {args.seconds:g} s per network\n")
    networks = args.networks.split(",")
    with tempfile.TemporaryDirectory(prefix="wb-bench-augment-") as tmp:
        for network in networks:
            throughput(network, args, Path(tmp))
        for shape in args.ops_shapes.split(","):
            per_batch(tuple(int(v) for v in shape.split("x")), args)
        if args.rotation_gain:
            rotation_gain(args, Path(tmp))


if __name__ == "__main__":
    main()
