"""Segmentation quality benchmark: the default network, with its own default settings, on street scenes.

    .venv/bin/python bench/segmentation.py [--images 300] [--epochs 30] [--threads 2] [--network unet] [--tiny]

The issue's target: on CamVid (a few hundred 480x360 street photographs, 11 classes and an
unlabelled value) resized to 128x96, the default network reaches val pixel accuracy >= 0.85 and
mean IoU >= 0.45 in 30 epochs and under 10 minutes on 2 CPU cores. CamVid cannot be fetched here
(no internet), so this bench GENERATES the closest stand-in it can: --images 480x360 street scenes
with CamVid's 11 classes (sky, building, pole, road, pavement, tree, sign_symbol, fence, car,
pedestrian, bicyclist) drawn in perspective with textures, noise and lighting that vary per image,
and unlabelled (255) blotches. It says nothing about real photographs; it measures the pipeline
(ingest at 128x96, the default network and settings, the real backend and reporter) on a task of
CamVid's shape. --source FOLDER trains on a real dataset instead (CamVid laid out as a segmentation
archive: images/ and masks/ or train/ val/ test/, with colormap.txt for its RGB labels).

The scenes go through the real segmentation ingest (PNG images and masks, 20% val, squash to
128x96), then one TrainingJob with the settings POST jobs/ gives a segmentation dataset when only
the dataset and epochs are given (jobs.options.with_network_defaults), trained by TorchBackend.train
with a DatabaseReporter as the worker runs it. Prints the val pixel accuracy and mean IoU per epoch,
the best and last, the epochs, the wall time and the torch threads.
--tiny: 16 small images, 1 epoch: a check that the benchmark still runs (tests/bench), not a figure.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_TMP = tempfile.TemporaryDirectory(prefix="wb-bench-seg-")
os.environ["DJANGO_SETTINGS_MODULE"] = "workbench.settings"
os.environ["WORKBENCH_DATA_DIR"] = _TMP.name
os.environ.pop("DATABASE_URL", None)
os.environ.pop("CELERY_BROKER_URL", None)
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

from datasets.ingest.pipeline import IngestOptions  # noqa: E402
from datasets.ingest.segmentation import run_segmentation_ingest  # noqa: E402
from datasets.models import Dataset  # noqa: E402
from jobs.models import MetricPoint, TrainingJob  # noqa: E402
from jobs.options import DEFAULTS, with_network_defaults  # noqa: E402
from jobs.reporting import DatabaseReporter  # noqa: E402
from jobs.services import job_network_check, training_plan  # noqa: E402
from training.torch.backend import TorchBackend  # noqa: E402
from workbench.leases import heartbeat, lease_claim  # noqa: E402

CLASSES = ["sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car", "pedestrian",
           "bicyclist"]
C = {name: i for i, name in enumerate(CLASSES)}
VOID = 255
SEED = 0


# --- the scenes -----------------------------------------------------------------------------

class Scene:
    """One street scene drawn twice at once: the photograph (RGB) and its mask (class indices)."""

    def __init__(self, rng: np.random.Generator, width: int, height: int) -> None:
        self.rng, self.w, self.h = rng, width, height
        self.image = Image.new("RGB", (width, height))
        self.mask = Image.new("L", (width, height), VOID)
        self.draw, self.label = ImageDraw.Draw(self.image), ImageDraw.Draw(self.mask)

    def colour(self, base: tuple[int, int, int], spread: int = 30) -> tuple[int, int, int]:
        return tuple(int(np.clip(c + self.rng.integers(-spread, spread + 1), 0, 255)) for c in base)  # type: ignore[return-value]

    def polygon(self, points: list[tuple[float, float]], cls: str | int, fill: tuple[int, int, int]) -> None:
        self.draw.polygon(points, fill=fill)
        self.label.polygon(points, fill=C[cls] if isinstance(cls, str) else cls)

    def rect(self, box: tuple[float, float, float, float], cls: str | int, fill: tuple[int, int, int]) -> None:
        box = (min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3]))
        self.draw.rectangle(box, fill=fill)
        self.label.rectangle(box, fill=C[cls] if isinstance(cls, str) else cls)

    def ellipse(self, box: tuple[float, float, float, float], cls: str | int, fill: tuple[int, int, int]) -> None:
        box = (min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3]))
        self.draw.ellipse(box, fill=fill)
        self.label.ellipse(box, fill=C[cls] if isinstance(cls, str) else cls)


def street_scene(rng: np.random.Generator, width: int = 480, height: int = 360) -> tuple[Image.Image, Image.Image]:
    s = Scene(rng, width, height)
    horizon = int(height * rng.uniform(0.38, 0.52))
    vanish = width * rng.uniform(0.35, 0.65)
    _sky(s, horizon)
    _buildings(s, horizon)
    _ground(s, horizon, vanish)
    for _ in range(int(rng.integers(1, 4))):
        _tree(s, horizon)
    _fence(s, horizon)
    for _ in range(int(rng.integers(1, 4))):
        _pole(s, horizon)
    objects = [_car] * int(rng.integers(1, 4)) + [_pedestrian] * int(rng.integers(0, 3)) + \
        [_bicyclist] * int(rng.integers(0, 2))
    depths = sorted(rng.uniform(0.15, 1.0, size=len(objects)))  # far first: near ones drawn over them
    for make, depth in zip(objects, depths):
        make(s, horizon, vanish, float(depth))
    _void(s)
    return _photograph(s), s.mask


def _sky(s: Scene, horizon: int) -> None:
    top, bottom = np.array(s.colour((110, 150, 210), 40)), np.array(s.colour((200, 210, 225), 25))
    for y in range(horizon + 1):
        t = y / max(horizon, 1)
        s.draw.line([(0, y), (s.w, y)], fill=tuple(int(v) for v in top + (bottom - top) * t))
    s.label.rectangle((0, 0, s.w, horizon), fill=C["sky"])


def _buildings(s: Scene, horizon: int) -> None:
    x = -int(s.rng.integers(0, 40))
    while x < s.w:
        wide, tall = int(s.rng.integers(50, 160)), int(s.rng.integers(horizon // 3, horizon + 10))
        if s.rng.random() < 0.15:  # a gap: sky shows through
            x += wide // 2
            continue
        wall = s.colour((150, 130, 115), 50)
        s.rect((x, horizon - tall, x + wide, horizon + 4), "building", wall)
        window = s.colour((60, 70, 85), 25)
        for wy in range(horizon - tall + 10, horizon - 10, 22):  # windows are building too
            for wx in range(x + 8, x + wide - 12, 20):
                s.draw.rectangle((wx, wy, wx + 9, wy + 12), fill=window)
        x += wide


def _ground(s: Scene, horizon: int, vanish: float) -> None:
    spread = s.rng.uniform(0.9, 1.6) * s.w
    left, right = vanish - spread / 2, vanish + spread / 2
    s.polygon([(0, horizon), (s.w, horizon), (s.w, s.h), (0, s.h)], "pavement", s.colour((170, 160, 140), 25))
    for y in range(horizon + 6, s.h, 14):  # paving joints
        s.draw.line([(0, y), (s.w, y)], fill=s.colour((140, 130, 115), 10))
    s.polygon([(vanish - 4, horizon), (vanish + 4, horizon), (right, s.h), (left, s.h)], "road",
              s.colour((80, 80, 85), 15))
    for t0 in np.arange(0.1, 1.0, 0.18):  # lane marks: road, painted white
        t1 = t0 + 0.07
        y0, y1 = horizon + (s.h - horizon) * t0, horizon + (s.h - horizon) * t1
        half0, half1 = 1 + 5 * t0, 1 + 5 * t1
        s.draw.polygon([(vanish - half0, y0), (vanish + half0, y0), (vanish + half1, y1), (vanish - half1, y1)],
                       fill=(235, 235, 230))


def _road_x(horizon: int, vanish: float, depth: float, s: Scene, side: float) -> tuple[float, float]:
    """A point on the ground at `depth` (0 horizon, 1 the bottom), `side` -1..1 across the road."""
    y = horizon + (s.h - horizon) * depth
    return vanish + side * depth * s.w * 0.45, y


def _tree(s: Scene, horizon: int) -> None:
    x, r = s.rng.uniform(0, s.w), s.rng.uniform(30, 80)
    top = horizon - s.rng.uniform(20, horizon * 0.8)
    s.rect((x - 5, top + r, x + 5, horizon + 15), "tree", s.colour((90, 65, 40), 15))
    green = s.colour((60, 110, 50), 30)
    for _ in range(5):  # a crown of overlapping leafy blobs
        dx, dy, rr = s.rng.uniform(-r / 2, r / 2), s.rng.uniform(-r / 2, r / 3), r * s.rng.uniform(0.5, 0.8)
        s.ellipse((x + dx - rr, top + dy - rr, x + dx + rr, top + dy + rr), "tree", s.colour(green, 15))


def _fence(s: Scene, horizon: int) -> None:
    if s.rng.random() < 0.4:
        return
    left = s.rng.random() < 0.5
    x0, x1 = (0, s.w * s.rng.uniform(0.15, 0.3)) if left else (s.w * s.rng.uniform(0.7, 0.85), s.w)
    top, bottom = horizon + s.rng.uniform(-30, -10), horizon + s.rng.uniform(30, 60)
    s.rect((x0, top, x1, top + 5), "fence", s.colour((120, 100, 80), 20))
    for x in np.arange(x0, x1, 9):
        s.rect((x, top, x + 4, bottom), "fence", s.colour((120, 100, 80), 20))


def _pole(s: Scene, horizon: int) -> None:
    x, bottom = s.rng.uniform(0, s.w), horizon + s.rng.uniform(20, (s.h - horizon) * 0.6)
    top = s.rng.uniform(10, horizon * 0.6)
    s.rect((x - 3, top, x + 3, bottom), "pole", s.colour((110, 110, 115), 15))
    if s.rng.random() < 0.6:  # a sign on it
        size, fill = s.rng.uniform(12, 26), s.colour(((200, 40, 40), (40, 80, 200), (230, 200, 40))[s.rng.integers(3)], 20)
        box = (x - size, top, x + size, top + size * 1.3)
        (s.ellipse if s.rng.random() < 0.5 else s.rect)(box, "sign_symbol", fill)


def _car(s: Scene, horizon: int, vanish: float, depth: float) -> None:
    cx, y = _road_x(horizon, vanish, depth, s, s.rng.uniform(-0.7, 0.7))
    w, h = 170 * depth + 10, 90 * depth + 6
    body = s.colour(tuple(int(v) for v in s.rng.integers(20, 230, 3)), 10)  # type: ignore[arg-type]
    s.rect((cx - w / 2, y - h * 0.6, cx + w / 2, y), "car", body)
    s.polygon([(cx - w * 0.35, y - h * 0.6), (cx - w * 0.25, y - h), (cx + w * 0.25, y - h),
               (cx + w * 0.35, y - h * 0.6)], "car", body)
    s.draw.rectangle((cx - w * 0.27, y - h * 0.92, cx + w * 0.27, y - h * 0.62), fill=s.colour((50, 60, 70), 15))
    for wx in (cx - w * 0.3, cx + w * 0.3):
        r = h * 0.18
        s.ellipse((wx - r, y - r, wx + r, y + r), "car", (25, 25, 25))


def _person(s: Scene, x: float, y: float, scale: float, cls: str) -> None:
    tall = 150 * scale + 8
    s.ellipse((x - tall * 0.14, y - tall * 0.82, x + tall * 0.14, y - tall * 0.25), cls,
              s.colour(tuple(int(v) for v in s.rng.integers(30, 220, 3)), 10))  # type: ignore[arg-type]
    s.rect((x - tall * 0.09, y - tall * 0.3, x + tall * 0.09, y), cls, s.colour((50, 50, 70), 20))
    head = tall * 0.09
    s.ellipse((x - head, y - tall - head * 0.2, x + head, y - tall * 0.8), cls, s.colour((200, 160, 130), 25))


def _pedestrian(s: Scene, horizon: int, vanish: float, depth: float) -> None:
    side = s.rng.choice([-1, 1]) * s.rng.uniform(0.9, 1.3)
    x, y = _road_x(horizon, vanish, depth, s, side)
    _person(s, float(np.clip(x, 10, s.w - 10)), y, depth, "pedestrian")


def _bicyclist(s: Scene, horizon: int, vanish: float, depth: float) -> None:
    x, y = _road_x(horizon, vanish, depth, s, s.rng.uniform(-0.9, 0.9))
    r = 35 * depth + 3
    for wx in (x - r * 1.2, x + r * 1.2):  # the bicycle is the bicyclist's, as in CamVid
        s.draw.ellipse((wx - r, y - 2 * r, wx + r, y), outline=(20, 20, 20), width=max(1, int(r / 6)))
        s.label.ellipse((wx - r, y - 2 * r, wx + r, y), outline=C["bicyclist"], width=max(1, int(r / 6)))
    _person(s, x, y - r, depth * 0.9, "bicyclist")


def _void(s: Scene) -> None:
    """Unlabelled blotches (CamVid's void): odd colours the network sees and the metrics never count."""
    for _ in range(int(s.rng.integers(0, 3))):
        x, y, r = s.rng.uniform(0, s.w), s.rng.uniform(0, s.h), s.rng.uniform(5, 25)
        s.ellipse((x - r, y - r, x + r, y + r), VOID, tuple(int(v) for v in s.rng.integers(0, 256, 3)))  # type: ignore[arg-type]


def _photograph(s: Scene) -> Image.Image:
    """Lighting, blur and sensor noise over the drawing."""
    image = s.image.filter(ImageFilter.GaussianBlur(s.rng.uniform(0.3, 1.2)))
    pixels = np.asarray(image, dtype=np.float32) * s.rng.uniform(0.7, 1.25)
    pixels += s.rng.normal(0, s.rng.uniform(4, 12), pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_scenes(folder: Path, count: int, width: int, height: int) -> None:
    rng = np.random.default_rng(SEED)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for index in range(count):
        image, mask = street_scene(rng, width, height)
        image.save(folder / "images" / f"{index:04d}.png")
        mask.save(folder / "masks" / f"{index:04d}.png")
    (folder / "classes.txt").write_text("\n".join(CLASSES) + "\n")


# --- the run --------------------------------------------------------------------------------

def ingest(owner, source: Path, width: int, height: int) -> Dataset:  # type: ignore[no-untyped-def]
    """Through the real segmentation ingest; a dataset with train/ val/ test/ folders keeps its splits."""
    options = IngestOptions(width=width, height=height, channels=3, resize_mode="squash", val_percent=20,
                            test_percent=0, seed=SEED, task="segmentation", ignore_index=VOID)
    dataset = Dataset.objects.create(
        owner=owner, name=source.name, source=Dataset.Source.EXAMPLE,
        source_name="these generated scenes" if source.name == "scenes" else str(source),
        image_width=width, image_height=height, channels=3, resize_mode="squash", val_percent=20, test_percent=0,
        seed=SEED, task="segmentation", ignore_index=VOID)
    result = run_segmentation_ingest(source, dataset.folder, options, max_pixels=40_000_000,
                                     workers=os.cpu_count() or 1)
    Dataset.objects.filter(pk=dataset.pk).update(
        status=Dataset.Status.READY, progress=1.0, classes=result.classes, split_counts=result.split_counts,
        class_counts=result.class_counts, class_pixels=result.class_pixels, colormap=result.colormap)
    dataset.refresh_from_db()
    return dataset


def train_job(owner, dataset: Dataset, network: str, epochs: int) -> TrainingJob:  # type: ignore[no-untyped-def]
    """A job as POST jobs/ {"dataset", "epochs"} makes it, trained as the worker trains it."""
    options = with_network_defaults(DEFAULTS, network, given={"epochs"})
    spec, _ = job_network_check(owner=owner, network=network, dataset=dataset)
    job = TrainingJob.objects.create(
        owner=owner, dataset=dataset, name=f"{network} bench", network=network, network_spec=spec,
        epochs=epochs, batch_size=options.batch_size, optimizer=options.optimizer,
        learning_rate=options.learning_rate, momentum=options.momentum, weight_decay=options.weight_decay,
        lr_policy=options.lr_policy, seed=SEED, device="cpu", status=TrainingJob.Status.QUEUED)
    job.folder.mkdir(parents=True, exist_ok=True)
    lease = lease_claim(TrainingJob, job.pk, stop_field="abort_requested")
    if lease is None:
        raise RuntimeError("the bench job could not be claimed")
    reporter = DatabaseReporter(lease)
    with heartbeat(lease):
        reporter.start()
        try:
            outcome = TorchBackend("torch", {"threads": 0}).train(training_plan(job), reporter)
        finally:
            reporter.close()
    if outcome != "done":
        raise RuntimeError(f"the bench job ended {outcome}")
    job.refresh_from_db()
    return job


def report(job: TrainingJob, seconds: float, threads: int) -> None:
    points = MetricPoint.objects.filter(job=job, split="val").order_by("step")
    curve: dict[float, dict[str, float]] = {}
    for point in points:
        curve.setdefault(point.epoch, {})[point.name] = point.value
    print("epoch  val pixel accuracy  val mean IoU")
    for epoch, values in curve.items():
        print(f"{epoch:5g}  {values.get('pixel_accuracy', float('nan')):18.3f}  {values.get('mean_iou', float('nan')):12.3f}")
    last = curve[max(curve)]
    print(f"network {job.network} ({job.optimizer} lr {job.learning_rate:g}, batch {job.batch_size}), "
          f"{job.epochs} epochs, {seconds:.0f} s wall, torch threads {threads}")
    print(f"last: val pixel accuracy {last['pixel_accuracy']:.3f}  val mean IoU {last['mean_iou']:.3f}")
    print(f"best: val pixel accuracy {job.best['val_pixel_accuracy']:.3f}  val mean IoU {job.best['val_mean_iou']:.3f}")
    met = last["pixel_accuracy"] >= 0.85 and last["mean_iou"] >= 0.45 and seconds < 600
    print(f"target (CamVid): pixel accuracy >= 0.85, mean IoU >= 0.45, under 600 s: {'met' if met else 'NOT met'}"
          f" on {job.dataset.source_name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300, help="generated scenes, 20%% of them val")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (the target's 2 cores)")
    parser.add_argument("--network", default="unet", help="the segmentation default unless named")
    parser.add_argument("--source", type=Path, default=None,
                        help="a real dataset instead of the generated scenes: a folder as a segmentation archive "
                             "holds it (images/ and masks/, or train/ val/ test/; classes.txt, colormap.txt), e.g. CamVid")
    parser.add_argument("--tiny", action="store_true", help="seconds, not a figure: a check that it still runs")
    args = parser.parse_args()
    photo, size = (480, 360), (128, 96)
    if args.tiny:
        args.images, args.epochs, args.threads, photo, size = 16, 1, 1, (160, 120), (64, 48)
    torch.set_num_threads(args.threads)
    call_command("migrate", verbosity=0)
    owner = get_user_model().objects.create_user("bench", password="bench-password")
    started = time.perf_counter()
    source = args.source or Path(_TMP.name) / "scenes"
    if args.source is None:
        write_scenes(source, args.images, *photo)
    dataset = ingest(owner, source, *size)
    what = (f"{source}" if args.source else f"{args.images} generated {photo[0]}x{photo[1]} street scenes")
    print(f"{what}, {len(dataset.classes)} classes + unlabelled {VOID}, ingested at {size[0]}x{size[1]}: "
          f"{dataset.split_counts} in {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    job = train_job(owner, dataset, args.network, args.epochs)
    report(job, time.perf_counter() - started, torch.get_num_threads())


if __name__ == "__main__":
    main()
