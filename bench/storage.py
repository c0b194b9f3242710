"""The S3 store against the local data folder: training throughput, and a dataset's first fetch on a host.

    .venv/bin/python bench/storage.py [--epochs 10] [--repeat 5] [--fetch-mb 256] [--tiny]

Starts a real S3 API in a process (moto's server; compose uses MinIO) and, in this one process:
  training  the same LeNet job on scikit-learn's digits (28x28, SGD, validate and snapshot every
            epoch, a real DatabaseReporter on SQLite) through TorchBackend.train, alternately with
            WORKBENCH_STORAGE=local and with the S3 store, where every snapshot goes up on the
            reporter's upload thread before it is recorded (jobs.uploads). Training samples/s, medians
            of --repeat runs each and their ratio (the issue asks >= 0.97).
  fetch     a dataset folder of --fetch-mb MB (arrays of random bytes, 8 files, and thumbnails) put
            into the store, then fetched into an empty cache as a new host does (store.fetch_folder),
            against a plain boto3 download of the same objects one after another (download_file with
            boto3's defaults): MB/s each and the ratio.
--tiny: one short run of each, a check that the benchmark still runs (tests/bench), not a figure.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_TMP = tempfile.TemporaryDirectory(prefix="wb-bench-storage-")
os.environ["DJANGO_SETTINGS_MODULE"] = "workbench.settings"
os.environ["WORKBENCH_DATA_DIR"] = _TMP.name
os.environ.pop("DATABASE_URL", None)
os.environ.pop("CELERY_BROKER_URL", None)
os.environ.setdefault("LOG_LEVEL", "WARNING")
for _name, _value in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret",
                      "AWS_DEFAULT_REGION": "us-east-1"}.items():
    os.environ[_name] = _value

import django  # noqa: E402

django.setup()

import boto3  # noqa: E402
import torch  # noqa: E402
from _digits import ingest_digits  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

from datasets.models import Dataset  # noqa: E402
from jobs.models import TrainingJob  # noqa: E402
from jobs.reporting import DatabaseReporter  # noqa: E402
from jobs.services import training_plan  # noqa: E402
from networks.builtin import builtin_spec  # noqa: E402
from training.torch.backend import TorchBackend  # noqa: E402
from workbench import cache, processes  # noqa: E402
from workbench.leases import heartbeat, lease_claim  # noqa: E402
from workbench.storage import store  # noqa: E402

BUCKET = "bench-store"
SEED = 3


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    port = processes.free_port()
    proc = processes.start([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                           log=Path(_TMP.name) / "moto.log", ready=lambda: processes.listening(port),
                           what="moto S3 server")
    return proc, f"http://127.0.0.1:{port}"


def use_store(value: str) -> None:
    settings.WORKBENCH_STORAGE = value
    assert store().remote == value.startswith("s3://")


# --- training -------------------------------------------------------------------------------------

def run_job(dataset: Dataset, owner, epochs: int) -> float:  # type: ignore[no-untyped-def]
    """Training samples/s of one LeNet job, claimed and reported as a worker runs it."""
    shape = tuple(dataset.image_shape)
    job = TrainingJob.objects.create(
        owner=owner, dataset=dataset, name="storage bench", network="lenet",
        network_spec=builtin_spec("lenet", shape, len(dataset.classes)), epochs=epochs, batch_size=64,
        optimizer="sgd", learning_rate=0.01, momentum=0.9, seed=SEED, device="cpu", status=TrainingJob.Status.QUEUED)
    job.folder.mkdir(parents=True, exist_ok=True)
    lease = lease_claim(TrainingJob, job.pk, stop_field="abort_requested")
    assert lease is not None
    started = time.perf_counter()
    reporter = DatabaseReporter(lease)
    with heartbeat(lease):
        reporter.start()
        try:
            outcome = TorchBackend("torch", {"threads": 0}).train(training_plan(job), reporter)
        finally:
            reporter.close()
    seconds = time.perf_counter() - started
    if outcome != "done" or reporter.failure:
        raise RuntimeError(f"the run ended {outcome} {reporter.failure}")
    if store().remote:  # every snapshot is in the store once the run has ended
        uploaded = {o.key for o in store().storage.bucket.objects.filter(Prefix=f"data/jobs/{job.pk}/snapshots/")}
        assert len(uploaded) == 3 * job.snapshots.count(), uploaded
    return epochs * dataset.split_counts["train"] / seconds


def training(dataset: Dataset, owner, endpoint: str, args: argparse.Namespace) -> None:  # type: ignore[no-untyped-def]
    local, remote = [], []
    if not args.tiny:  # first-call costs of torch kernels, the ORM and boto3 on both sides
        use_store("local")
        run_job(dataset, owner, 1)
        use_store(f"s3://{BUCKET}/data")
        run_job(dataset, owner, 1)
    for rep in range(args.repeat):
        use_store("local")
        local.append(run_job(dataset, owner, args.epochs))
        use_store(f"s3://{BUCKET}/data")
        remote.append(run_job(dataset, owner, args.epochs))
        print(f"  run {rep + 1}: local {local[-1]:8.0f} samples/s   s3 {remote[-1]:8.0f} samples/s", flush=True)
    paired = statistics.median(b / a for a, b in zip(local, remote))
    print(f"training lenet {args.epochs} epochs: local {statistics.median(local):.0f} samples/s  "
          f"s3 {statistics.median(remote):.0f} samples/s  s3/local medians {statistics.median(remote) / statistics.median(local):.3f}"
          f"  paired median {paired:.3f}", flush=True)


# --- a dataset's first fetch on a new host --------------------------------------------------------

def fetch(endpoint: str, args: argparse.Namespace) -> None:
    use_store(f"s3://{BUCKET}/data")
    folder = Path(settings.DATA_DIR) / "datasets" / "9999"
    total = args.fetch_mb * 1024 * 1024
    for i in range(8):
        (folder / f"part_{i}.npy").parent.mkdir(parents=True, exist_ok=True)
        (folder / f"part_{i}.npy").write_bytes(os.urandom(total // 8))
    (folder / "thumbs").mkdir()
    for i in range(40):
        (folder / "thumbs" / f"0_{i}.png").write_bytes(os.urandom(2000))
    store().publish_folder(folder)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    client = boto3.client("s3", endpoint_url=endpoint)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="data/datasets/9999/")["Contents"]]
    ours, plain = [], []
    for rep in range(args.repeat):
        shutil.rmtree(folder)
        for mark in (Path(settings.DATA_DIR) / cache.MARKS).glob("datasets-9999*"):
            if mark.is_file():
                mark.unlink()
        started = time.perf_counter()
        store().fetch_folder(folder)
        ours.append(size / (time.perf_counter() - started) / 1e6)
        target = Path(_TMP.name) / "plain"
        shutil.rmtree(target, ignore_errors=True)
        started = time.perf_counter()
        for key in keys:
            path = target / key
            path.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(BUCKET, key, str(path))
        plain.append(size / (time.perf_counter() - started) / 1e6)
        print(f"  run {rep + 1}: store.fetch_folder {ours[-1]:7.1f} MB/s   boto3 download_file {plain[-1]:7.1f} MB/s",
              flush=True)
    print(f"first fetch of a {size / 1e6:.1f} MB dataset ({len(keys)} objects): store {statistics.median(ours):.1f} MB/s"
          f"  boto3 {statistics.median(plain):.1f} MB/s  store/boto3 {statistics.median(ours) / statistics.median(plain):.3f}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--fetch-mb", type=int, default=256)
    parser.add_argument("--tiny", action="store_true", help="seconds, not a figure: a check that it still runs")
    args = parser.parse_args()
    if args.tiny:
        args.epochs, args.repeat, args.fetch_mb = 1, 1, 4
    torch.set_num_threads(1)
    server, endpoint = start_server()
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    try:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        call_command("migrate", verbosity=0)
        owner = get_user_model().objects.create_user("bench", password="bench-password")
        dataset = ingest_digits(owner, 28, Path(_TMP.name), SEED)
        print(f"moto S3 server at {endpoint}; digits 28x28: {dataset.split_counts}", flush=True)
        training(dataset, owner, endpoint, args)
        fetch(endpoint, args)
    finally:
        processes.stop(server)


if __name__ == "__main__":
    try:
        main()
    finally:
        from django.db import connections

        connections.close_all()
        _TMP.cleanup()
