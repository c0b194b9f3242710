"""Detection quality benchmark: the default network (`centernet`), with its own default settings, on
generated digits with exact boxes.

    .venv/bin/python bench/detection.py [--train 300] [--val 60] [--size 96] [--classes 3] [--epochs 30]
                                        [--threads 2] [--augment flip] [--tiny]

The issue's target is a real microscope dataset (about 300 640x480 photographs, 3 classes, 1-30
boxes each, resized to 320x240): it cannot be fetched here, so this bench trains on what
tests/detection/generated.py makes: sklearn's handwritten digits 0..classes-1, scaled to 12-34 px,
tinted, pasted 1-4 an image on noisy textured backgrounds, each box the tight box of the digit's
ink. The dataset's files are written as the detection ingest writes them (the task contract:
{split}_images.npy, {split}_boxes.npy, mean.npy); the job is the plan POST jobs/ makes for a
detection dataset given only the epochs (jobs.options.with_network_defaults: AdamW 2e-3, batch 8,
cosine), trained by TorchBackend.train. Prints the val mAP@0.5 and mAP@0.5:0.95 at each epoch's end,
the best and last, each class's AP@0.5 at the end, the wall time and the torch threads.
--tiny: 16 small images, 1 epoch: a check that the benchmark still runs (tests/bench), not a figure.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_TMP = tempfile.TemporaryDirectory(prefix="wb-bench-det-")
os.environ["DJANGO_SETTINGS_MODULE"] = "workbench.settings"
os.environ["WORKBENCH_DATA_DIR"] = _TMP.name
os.environ.pop("DATABASE_URL", None)
os.environ.pop("CELERY_BROKER_URL", None)
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from jobs.options import DEFAULTS, with_network_defaults  # noqa: E402
from networks.builtin import builtin_spec  # noqa: E402
from tests.detection.generated import class_names, write_detection_dataset  # noqa: E402
from training.contract import SilentReporter, TrainingPlan  # noqa: E402
from training.torch.backend import TorchBackend  # noqa: E402
from training.torch.detection import detections_for  # noqa: E402
from training.torch.models import load_snapshot  # noqa: E402
from training.vision_tasks import vision_task  # noqa: E402
from training.vision_tasks.detection.metrics import class_ap, coco_evaluation  # noqa: E402


class Printer(SilentReporter):
    """Keeps the val metrics and prints one line per validation."""

    def __init__(self) -> None:
        self.val: dict[int, dict[str, float]] = {}
        self.epochs: dict[int, float] = {}
        self.started = time.perf_counter()

    def metric(self, *, split: str, name: str, value: float, epoch: float, step: int) -> None:
        if split != "val":
            return
        self.val.setdefault(step, {})[name] = value
        self.epochs[step] = epoch
        if len(self.val[step]) == 3:
            v = self.val[step]
            print(f"epoch {epoch:5.2f}  val loss {v['loss']:.4f}  mAP@0.5 {v['map_50']:.4f}  mAP@0.5:0.95 {v['map']:.4f}"
                  f"  ({time.perf_counter() - self.started:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--val", type=int, default=60)
    parser.add_argument("--size", type=int, default=96, help="images are size x size")
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--augment", choices=("none", "flip", "scale"), default="none")
    parser.add_argument("--tiny", action="store_true", help="16 small images, 1 epoch: the bench still runs")
    args = parser.parse_args()
    if args.tiny:
        args.train, args.val, args.size, args.epochs = 16, 8, 48, 1
    torch.set_num_threads(args.threads)
    root = Path(_TMP.name)
    sides = (12, 34) if args.size >= 64 else (8, 16)
    dataset = write_detection_dataset(root / "dataset", train=args.train, val=args.val, size=(args.size, args.size),
                                      classes=args.classes, max_boxes=4, kind="digits", sides=sides, seed=1)
    boxes = np.load(dataset / "train_boxes.npy")
    print(f"{args.train} generated {args.size}x{args.size} digit scenes (+{args.val} val), {args.classes} classes, "
          f"{int((boxes[..., 0] >= 0).sum())} train boxes", flush=True)
    options = with_network_defaults(DEFAULTS, "centernet", given={"epochs"})
    plan = _plan(dataset, root / "job", options, args)
    print(f"network centernet ({plan.optimizer} lr {plan.learning_rate:g}, batch {plan.batch_size}, {plan.lr_policy}), "
          f"{plan.epochs} epochs, {args.threads} torch threads, augmentation {plan.augmentation or 'none'}", flush=True)
    printer = Printer()
    started = time.perf_counter()
    TorchBackend("torch", {"threads": args.threads}).train(plan, printer)
    wall = time.perf_counter() - started
    best = max(printer.val.values(), key=lambda v: v["map_50"])
    last = printer.val[max(printer.val)]
    print(f"best: val mAP@0.5 {best['map_50']:.4f}  val mAP@0.5:0.95 {best['map']:.4f}")
    print(f"last: val mAP@0.5 {last['map_50']:.4f}  val mAP@0.5:0.95 {last['map']:.4f}")
    _per_class(plan, dataset)
    print(f"wall {wall:.1f} s for {plan.epochs} epochs ({wall / plan.epochs:.1f} s an epoch)")


def _plan(dataset: Path, output: Path, options: object, args: argparse.Namespace) -> TrainingPlan:
    o = asdict(options)  # type: ignore[call-overload]
    classes = class_names(args.classes, "digits")
    shape = (3, args.size, args.size)
    augmentation = {"none": {}, "flip": {"flip": "horizontal"},
                    "scale": {"flip": "horizontal", "scale": [0.8, 1.2], "translate": 0.1}}[args.augment]
    outputs = vision_task("detection").outputs(classes)
    return TrainingPlan(job_id=1, output_folder=output, dataset_folder=dataset, input_shape=shape, classes=classes,
                        network_spec=builtin_spec("centernet", shape, outputs), epochs=args.epochs,
                        batch_size=o["batch_size"], optimizer=o["optimizer"], learning_rate=o["learning_rate"],
                        momentum=o["momentum"], weight_decay=o["weight_decay"], lr_policy=o["lr_policy"], lr_params={},
                        seed=0, device="cpu", val_interval=1.0, snapshot_interval=float(args.epochs), task="detection",
                        preprocessing={"width": args.size, "height": args.size, "channels": 3, "resize_mode": "squash",
                                       "seed": 0}, augmentation=augmentation)


def _per_class(plan: TrainingPlan, dataset: Path) -> None:
    model, mean = load_snapshot(plan.output_folder / f"snapshots/epoch_{plan.epochs}.safetensors")
    images = np.load(dataset / "val_images.npy")
    detections = np.concatenate([detections_for(model, mean, images[i : i + 32], len(plan.classes))
                                 for i in range(0, len(images), 32)])
    evaluation = coco_evaluation(detections, np.load(dataset / "val_boxes.npy"), len(plan.classes))
    shown = "  ".join(f"{name} {row.get('ap_50') or 0:.3f}" for name, row in zip(plan.classes, class_ap(evaluation)))
    print(f"per class AP@0.5 (last): {shown}")


if __name__ == "__main__":
    main()
