"""Ingest benchmark: the product's pipeline against a plain single-process Pillow loop.

    .venv/bin/python bench/ingest.py [--images 2400] [--size 64x64] [--repeat 3] [--tiny]

Builds a seeded zip of photo-like JPEGs (smooth gradients plus noise, 320x240..640x480) in a
temporary folder, then times, in this one process:
  baseline   open the zip; per member: Image.open -> convert -> resize (bilinear) -> np.asarray
  product    ZipSource (every member checked, read in place) + run_ingest with one decode
             thread per core (the product's default),
             once as shipped (fast_jpeg=True: libjpeg decodes at a reduced scale) and once with
             fast_jpeg=False, which shows what the parallelism alone buys
Each figure is the best of --repeat interleaved runs (the median is printed beside it), with
the CPU time it used: on a busy machine the CPU time per image is the steadier comparison.
--tiny runs every contender once on 40 images at 32x32: a check that the benchmark still works
(tests/bench), not a figure.
"""
from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from datasets.ingest.archive import ExtractLimits, ZipSource  # noqa: E402
from datasets.ingest.pipeline import IngestOptions, ingest_workers, run_ingest  # noqa: E402

MAX_PIXELS = 40_000_000
LIMITS = ExtractLimits(max_members=500_000, max_bytes=20 * 1024**3, max_ratio=200)
CLASSES = ("cat", "dog", "fox", "owl")


@dataclass(frozen=True)
class Timing:
    best: float
    median: float
    cpu: float  # CPU seconds (user + system, all threads) of the best run


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the archive ----------------------------------------------------------------------------

def photo(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A smooth colour gradient with a soft blob and sensor-like noise: JPEG sizes like photos."""
    x = np.linspace(0, 1, width, dtype=np.float32)[np.newaxis, :]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, np.newaxis]
    base = rng.uniform(0, 255, size=(3, 3)).astype(np.float32)
    cx, cy, radius = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.3)
    blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius**2))
    channels = [base[c, 0] * (1 - x) + base[c, 1] * y + base[c, 2] * blob for c in range(3)]
    noise = rng.standard_normal((height, width, 3), dtype=np.float32) * 8
    pixels = np.stack(channels, axis=-1) / 2 + noise
    return np.clip(pixels, 0, 255).astype(np.uint8)


def jpeg_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def member(seed: int, index: int) -> tuple[str, bytes]:
    """Image `index` of the archive, from its own seeded generator: the same bytes every time."""
    rng = np.random.default_rng([seed, index])
    width, height = int(rng.integers(320, 641)), int(rng.integers(240, 481))
    return f"photos/{CLASSES[index % len(CLASSES)]}/{index:05d}.jpg", jpeg_bytes(photo(rng, width, height))


def write_archive(path: Path, images: int, seed: int = 1234) -> int:
    """A zip (deflated, as `zip -r` makes it) of `images` JPEGs in four class folders; its size."""
    with ThreadPoolExecutor() as pool, zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in pool.map(lambda i: member(seed, i), range(images)):
            archive.writestr(name, data)
    return path.stat().st_size


# --- the two contenders ---------------------------------------------------------------------

def baseline(archive_path: Path, size: tuple[int, int]) -> int:
    """The obvious single-process loop a user would write."""
    count = 0
    with zipfile.ZipFile(archive_path) as archive:
        for info in archive.infolist():
            if info.is_dir() or not info.filename.lower().endswith(".jpg"):
                continue
            with archive.open(info) as member:
                img = Image.open(member).convert("RGB").resize(size, Image.Resampling.BILINEAR)
                np.asarray(img)
            count += 1
    return count


def product(archive_path: Path, work: Path, size: tuple[int, int], *, fast_jpeg: bool) -> int:
    """The product's path from an uploaded zip to split arrays on disk (as datasets.services does:
    every member checked up front, then decoded straight from the zip)."""
    source = ZipSource(archive_path, LIMITS)
    options = IngestOptions(width=size[0], height=size[1], channels=3, resize_mode="squash",
                            val_percent=20, test_percent=10, seed=7)
    try:
        result = run_ingest(source, work, options, max_pixels=MAX_PIXELS,
                            workers=ingest_workers(0), fast_jpeg=fast_jpeg)
    finally:
        source.close()
    return sum(result.split_counts.values())


def settle() -> None:
    """Untimed: flush dirty pages, so that no contender pays for another's write-back."""
    os.sync()


def measure(contenders: dict[str, Callable[[Path], int]], scratch: Path, repeat: int,
            expected: int) -> dict[str, Timing]:
    """Time each contender `repeat` times, in interleaved rounds, so that a burst of load from
    elsewhere on the machine hits every contender rather than just one. Each run writes to a
    folder of its own, deleted only at the end: ext4 makes file creation slow right after many
    deletes (it avoids reusing recently freed inodes), which would be the benchmark's own doing."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    for round_ in range(repeat):
        for index, (name, run) in enumerate(contenders.items()):
            settle()
            start, start_cpu = time.perf_counter(), cpu_seconds()
            count = run(scratch / f"run-{round_}-{index}")
            times[name].append((time.perf_counter() - start, cpu_seconds() - start_cpu))
            if count != expected:
                raise SystemExit(f"{name}: expected {expected} images, got {count}")
    return {name: _timing(runs) for name, runs in times.items()}


def _timing(runs: list[tuple[float, float]]) -> Timing:
    best = min(runs)
    return Timing(best=best[0], median=statistics.median(wall for wall, _ in runs), cpu=best[1])


# --- reporting ------------------------------------------------------------------------------

def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 64x64, got {text!r}") from None
    return width, height


def report(name: str, images: int, timing: Timing, reference: Timing | None) -> None:
    rate, median_rate = images / timing.best, images / timing.median
    line = (f"{name:<26} {rate:7.1f} img/s  (median {median_rate:6.1f}, best {timing.best:5.2f}s, "
            f"cpu {1000 * timing.cpu / images:4.2f} ms/img)")
    if reference is not None:
        line += f"  ratio {reference.best / timing.best:4.2f}x (median {reference.median / timing.median:4.2f}x)"
    print(line, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2400, help="total images, over 4 classes")
    parser.add_argument("--size", type=parse_size, default=(64, 64), help="target WxH (default 64x64)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender; best is reported")
    parser.add_argument("--tiny", action="store_true", help="seconds, not a figure: a check that it still runs")
    args = parser.parse_args(argv)
    if args.tiny:
        args.images, args.size, args.repeat = 40, (32, 32), 1
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        archive_path = Path(tmp) / "photos.zip"
        started = time.perf_counter()
        size_mb = write_archive(archive_path, args.images) / 1024**2
        print(f"cores: {os.cpu_count()}  ingest workers: {ingest_workers(0)}  images: {args.images}  "
              f"target: {args.size[0]}x{args.size[1]} RGB  archive: {size_mb:.1f} MiB "
              f"(built in {time.perf_counter() - started:.1f}s)", flush=True)
        timings = measure({
            "baseline (1 process)": lambda work: baseline(archive_path, args.size),
            "product (fast_jpeg=True)": lambda work: product(archive_path, work, args.size, fast_jpeg=True),
            "product (fast_jpeg=False)": lambda work: product(archive_path, work, args.size, fast_jpeg=False),
        }, Path(tmp), args.repeat, args.images)
    base = timings["baseline (1 process)"]
    for name, timing in timings.items():
        report(name, args.images, timing, None if timing is base else base)
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1) + 0.5:
        print(f"note: load average {load:.1f} on {os.cpu_count()} cores: other work competed for the CPUs")


if __name__ == "__main__":
    main()
