"""Training overhead benchmark: a job run through the torch backend against a bare PyTorch loop.

    .venv/bin/python bench/train_overhead.py [--networks lenet,mlp] [--epochs 20] [--repeat 7]
                                             [--size 28] [--threads 1] [--batch-size 64] [--tiny]

Ingests scikit-learn's digits once (grayscale, --size square) into a temporary data folder, then
for each network alternates, in this one process and with the same torch.set_num_threads:
  bare     a hand-written loop: same model (build_model of the built-in spec), same data (the
           ingested arrays in memory), batch size, SGD (momentum 0.9, lr 0.01), seed, shuffling
           and normalisation ((x - mean) / 255), scoring the validation split after each epoch as
           the job does (also reported: the same loop without validation); no snapshots
  backend  TorchBackend.train on a TrainingJob with the job defaults (validate and snapshot every
           epoch), reporting to a real DatabaseReporter on the SQLite database
Both count training samples only: epochs * train size / wall time (set-up included for both).
Prints the median of --repeat runs of each and the ratio backend / bare (of the medians, the
median of the paired runs' ratios, and of the best runs). The backend's extra cost is then the
reporter, heartbeat, abort checks, snapshots and their bookkeeping: the overhead the issue asks about.
--tiny: one run of one epoch each, no warm-up: a check that the benchmark still works (tests/bench), not a figure.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_TMP = tempfile.TemporaryDirectory(prefix="wb-bench-train-")
os.environ["DJANGO_SETTINGS_MODULE"] = "workbench.settings"
os.environ["WORKBENCH_DATA_DIR"] = _TMP.name
os.environ.pop("DATABASE_URL", None)
os.environ.pop("CELERY_BROKER_URL", None)
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _digits import ingest_digits  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

from datasets.ingest.store import open_split  # noqa: E402
from datasets.models import Dataset  # noqa: E402
from jobs.models import TrainingJob  # noqa: E402
from jobs.reporting import DatabaseReporter  # noqa: E402
from jobs.services import training_plan  # noqa: E402
from networks.builtin import builtin_spec  # noqa: E402
from training.torch.backend import TorchBackend  # noqa: E402
from training.torch.build import build_model  # noqa: E402
from workbench.leases import heartbeat, lease_claim  # noqa: E402

SEED = 0
LR, MOMENTUM = 0.01, 0.9


# --- the two contenders ---------------------------------------------------------------------

def run_bare(dataset: Dataset, network: str, epochs: int, batch_size: int, validate: bool = True) -> float:
    """A hand-written loop, as someone would write it without the workbench; returns seconds.

    With `validate`, it also scores the validation split after each epoch, as the job does by
    default, so the ratio measures what the workbench adds rather than work the user asked for.
    """
    started = time.perf_counter()
    torch.manual_seed(SEED)
    images, labels = open_split(dataset.folder, "train")
    images = torch.from_numpy(np.array(images))  # in memory, as the backend holds a small split
    labels = torch.from_numpy(labels.astype(np.int64))
    val_images, val_labels = open_split(dataset.folder, "val")
    val_images, val_labels = torch.from_numpy(np.array(val_images)), torch.from_numpy(val_labels.astype(np.int64))
    mean = torch.from_numpy(np.load(dataset.folder / "mean.npy"))
    shape = tuple(dataset.image_shape)
    model = build_model(builtin_spec(network, shape, len(dataset.classes)), shape, len(dataset.classes))
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SEED + epoch))
        for start in range(0, len(labels), batch_size):
            index = order[start : start + batch_size]
            x = (images[index].float() - mean) / 255.0
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x), labels[index]).backward()
            optimizer.step()
        if validate:
            model.eval()
            with torch.inference_mode():
                for start in range(0, len(val_labels), batch_size * 2):
                    logits = model((val_images[start : start + batch_size * 2].float() - mean) / 255.0)
                    loss_fn(logits, val_labels[start : start + batch_size * 2]).item()
            model.train()
    return time.perf_counter() - started


def run_backend(dataset: Dataset, owner, network: str, epochs: int, batch_size: int) -> float:  # type: ignore[no-untyped-def]
    """A job with the defaults (validate and snapshot every epoch), through the real reporter."""
    shape = tuple(dataset.image_shape)
    job = TrainingJob.objects.create(
        owner=owner, dataset=dataset, name=f"{network} bench", network=network,
        network_spec=builtin_spec(network, shape, len(dataset.classes)), epochs=epochs, batch_size=batch_size,
        optimizer="sgd", learning_rate=LR, momentum=MOMENTUM, seed=SEED, device="cpu",
        status=TrainingJob.Status.QUEUED)
    job.folder.mkdir(parents=True, exist_ok=True)
    backend = TorchBackend("torch", {"threads": 0})
    started = time.perf_counter()
    # As the worker runs it (jobs.services._train_claimed): claimed through a lease, a heartbeat
    # thread beside the reporter's writer.
    lease = lease_claim(TrainingJob, job.pk, stop_field="abort_requested")
    if lease is None:
        raise RuntimeError("the bench job could not be claimed")
    reporter = DatabaseReporter(lease)
    with heartbeat(lease):
        reporter.start()
        try:
            outcome = backend.train(training_plan(job), reporter)
        finally:
            reporter.close()
    seconds = time.perf_counter() - started
    if outcome != "done":
        raise RuntimeError(f"the backend run ended {outcome}")
    return seconds


# --- the report -----------------------------------------------------------------------------

def compare(dataset: Dataset, owner, network: str,  # type: ignore[no-untyped-def]
            args: argparse.Namespace) -> tuple[list[float], list[float], list[float]]:
    samples = args.epochs * dataset.split_counts["train"]
    bare, backend, training_only = [], [], []
    # Warm-up for both: first-call costs of torch kernels, and of the ORM and reporter on the backend side.
    if not args.tiny:
        run_bare(dataset, network, 1, args.batch_size)
        run_backend(dataset, owner, network, 1, args.batch_size)
    for rep in range(args.repeat):
        bare.append(samples / run_bare(dataset, network, args.epochs, args.batch_size))
        backend.append(samples / run_backend(dataset, owner, network, args.epochs, args.batch_size))
        training_only.append(samples / run_bare(dataset, network, args.epochs, args.batch_size, validate=False))
        print(f"  {network} run {rep + 1}: bare {bare[-1]:8.0f} samples/s   backend {backend[-1]:8.0f} samples/s"
              f"   bare without validation {training_only[-1]:8.0f} samples/s", flush=True)
    return bare, backend, training_only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", default="lenet,mlp")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads for both (1: steadiest on a shared machine)")
    parser.add_argument("--tiny", action="store_true", help="seconds, not a figure: a check that it still runs")
    args = parser.parse_args()
    if args.tiny:
        args.epochs, args.repeat = 1, 1
    torch.set_num_threads(args.threads)
    call_command("migrate", verbosity=0)
    owner = get_user_model().objects.create_user("bench", password="bench-password")
    dataset = ingest_digits(owner, args.size, Path(_TMP.name), SEED)
    print(f"digits {args.size}x{args.size} grayscale: {dataset.split_counts}; batch {args.batch_size}, "
          f"{args.epochs} epochs, {args.repeat} runs each, torch threads {torch.get_num_threads()}", flush=True)
    results = {name: compare(dataset, owner, name, args) for name in args.networks.split(",")}
    # On a shared machine one slow run can hit either side; the paired ratio (each backend run
    # against the bare run just before it) and the best runs are steadier than the medians alone.
    print("\nnetwork  bare samples/s  backend samples/s  backend/bare: medians  paired median  best/best"
          "  | vs bare without validation")
    for name, (bare, backend, training_only) in results.items():
        paired = statistics.median(b / a for a, b in zip(bare, backend))
        print(f"{name:8s} {statistics.median(bare):14.0f} {statistics.median(backend):18.0f} "
              f"{statistics.median(backend) / statistics.median(bare):22.3f} {paired:14.3f} "
              f"{max(backend) / max(bare):10.3f}  | {statistics.median(backend) / statistics.median(training_only):.3f}")


if __name__ == "__main__":
    try:
        main()
    finally:
        from django.db import connections

        connections.close_all()
        _TMP.cleanup()
