"""Live-curve latency benchmark: from the worker's report of a point to an SSE client's receipt.

    .venv/bin/python bench/live_latency.py [--backend embedded|redis|both] [--epochs 20]
                                           [--redis-database postgres|sqlite] [--threads 1] [--tiny]

For each set-up, in a fresh temporary data folder: migrate, a user and token, the digits example
ingested (28x28 grayscale), then a real `celery worker` and a real uvicorn server as subprocesses
on the same environment, and a LeNet job long enough to run ~20-30 s. An SSE client (http.client,
line by line) reads `GET /api/v1/jobs/{id}/events/`; for each `metric` event the latency is
time.time() when its data line is parsed minus the point's `time` (the worker's time.time() when
it reported it; same machine, same clock). Prints count, p50, p95, p99 and max in ms.
  embedded  SQLite + the filesystem broker; the stream polls the database
  redis     CELERY_BROKER_URL=redis://127.0.0.1:6379/14; the stream is woken by pub/sub; the database
            is PostgreSQL (database wb_bench, created through psql) or SQLite (--redis-database)
Each set-up runs in a child process of its own, since settings are read once per process.
--tiny: the embedded set-up only (it needs no Redis nor PostgreSQL), a 1-epoch job: a check that the
benchmark still works (tests/bench), not a figure.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from workbench.processes import free_port, listening, start, stop, web_command, worker_command, worker_ready  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/14"
PG_DATABASE = "wb_bench"
PG_URL = f"postgres://root@127.0.0.1:5432/{PG_DATABASE}"


# --- the parent: one child process per set-up -------------------------------------------------

def run_child(name: str, args: argparse.Namespace) -> int:
    command = [sys.executable, __file__, "--child", name, "--epochs", str(args.epochs), "--threads",
               str(args.threads), "--redis-database", args.redis_database]
    child = subprocess.Popen(command, cwd=ROOT)
    try:
        return child.wait()
    finally:
        if child.poll() is None:
            child.terminate()
            child.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("embedded", "redis", "both"), default="both")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="WORKBENCH_TORCH_THREADS for the worker")
    parser.add_argument("--redis-database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--child", choices=("embedded", "redis"), help=argparse.SUPPRESS)
    parser.add_argument("--tiny", action="store_true", help="seconds, not a figure: a check that it still runs")
    args = parser.parse_args()
    if args.tiny:
        args.backend, args.epochs = "embedded", 1
    if args.child:
        sys.exit(measure(args.child, args))
    names = ("embedded", "redis") if args.backend == "both" else (args.backend,)
    failed = [name for name in names if run_child(name, args) != 0]
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


# --- the child: one set-up, measured ----------------------------------------------------------

def environment(name: str, data_dir: str, args: argparse.Namespace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL",
                                                            "WORKBENCH_LIVE_REDIS_URL")}
    env.update(DJANGO_SETTINGS_MODULE="workbench.settings", WORKBENCH_DATA_DIR=data_dir, PYTHONUNBUFFERED="1",
               WORKBENCH_TORCH_THREADS=str(args.threads), LOG_LEVEL="WARNING")
    if name == "redis":
        env["CELERY_BROKER_URL"] = REDIS_URL
        if args.redis_database == "postgres":
            env["DATABASE_URL"] = PG_URL
    return env


def reset_services(name: str, args: argparse.Namespace) -> None:
    if name != "redis":
        return
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()  # db 14 is this benchmark's own
    if args.redis_database == "postgres":
        for sql in (f"DROP DATABASE IF EXISTS {PG_DATABASE}", f"CREATE DATABASE {PG_DATABASE}"):
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "root", "-d", "root", "-q", "-c", sql],
                           check=True, capture_output=True)


def measure(name: str, args: argparse.Namespace) -> int:
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix=f"wb-bench-live-{name}-") as data_dir:
        env = environment(name, data_dir, args)
        reset_services(name, args)
        os.environ.update(env)
        for key in ("DATABASE_URL", "CELERY_BROKER_URL"):
            if key not in env:
                os.environ.pop(key, None)
        try:
            latencies, seconds = run_job(name, env, Path(data_dir), procs, args)
        finally:
            for proc in procs:
                stop(proc)
            from django.db import connections

            connections.close_all()
    report(name, args, latencies, seconds)
    return 0 if latencies else 1


def run_job(name: str, env: dict[str, str], data_dir: Path, procs: list[subprocess.Popen[bytes]],
            args: argparse.Namespace) -> tuple[list[float], float]:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    token, owner = make_user()
    dataset = ingest_digits(owner, data_dir)
    port = free_port()
    procs.append(start_worker(env, data_dir))
    procs.append(start_web(env, data_dir, port))
    pk = create_job(owner, dataset, args.epochs)
    print(f"[{name}] job {pk}: lenet, {args.epochs} epochs on {dataset.split_counts['train']} digits", flush=True)
    started = time.monotonic()
    latencies = stream_latencies(port, pk, token)
    return latencies, time.monotonic() - started


def make_user():  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    owner = get_user_model().objects.create_user("bench", password="bench-password")
    return Token.objects.create(user=owner).key, owner


def ingest_digits(owner, data_dir: Path):  # type: ignore[no-untyped-def]
    from datasets.example import write_digits
    from datasets.ingest.pipeline import IngestOptions, run_ingest
    from datasets.models import Dataset

    options = IngestOptions(width=28, height=28, channels=1, resize_mode="squash", val_percent=10,
                            test_percent=10, seed=0)
    dataset = Dataset.objects.create(
        owner=owner, name="digits", source=Dataset.Source.EXAMPLE, source_name="digits", image_width=28,
        image_height=28, channels=1, resize_mode="squash", val_percent=10, test_percent=10, seed=0)
    write_digits(data_dir / "digits-src")
    dataset.folder.mkdir(parents=True, exist_ok=True)
    result = run_ingest(data_dir / "digits-src", dataset.folder, options, max_pixels=40_000_000, workers=2)
    Dataset.objects.filter(pk=dataset.pk).update(
        status=Dataset.Status.READY, progress=1.0, classes=result.classes, split_counts=result.split_counts,
        class_counts=result.class_counts)
    dataset.refresh_from_db()
    return dataset


def create_job(owner, dataset, epochs: int) -> int:  # type: ignore[no-untyped-def]
    from jobs.services import JobSettings, job_create

    return job_create(owner=owner, dataset=dataset, network="lenet",
                      options=JobSettings(name="latency bench", epochs=epochs, device="cpu")).pk


# --- subprocesses -----------------------------------------------------------------------------

def start_worker(env: dict[str, str], data_dir: Path) -> subprocess.Popen[bytes]:
    from django.conf import settings

    log = data_dir / "worker.log"
    args = worker_command(queues=settings.WORKER_QUEUES, name=f"bench-{os.getpid()}")
    return start(args, env=env, log=log, ready=worker_ready(log), what="celery worker")


def start_web(env: dict[str, str], data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    return start(web_command("127.0.0.1", port), env=env, log=data_dir / "web.log", ready=lambda: listening(port),
                 what="uvicorn")


# --- the client -------------------------------------------------------------------------------

def stream_latencies(port: int, pk: int, token: str, timeout: float = 600) -> list[float]:
    """Seconds from report to receipt for every metric event, until the stream ends."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", f"/api/v1/jobs/{pk}/events/", headers={"Authorization": f"Token {token}"})
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"the stream answered {response.status}: {response.read()[:500]!r}")
        return read_stream(response)
    finally:
        conn.close()


def read_stream(response: http.client.HTTPResponse) -> list[float]:
    latencies: list[float] = []
    event = ""
    while True:
        raw = response.readline()
        if not raw:
            return latencies
        line = raw.decode().rstrip("\n")
        field, _, value = line.partition(": ")
        if not line:
            event = ""
        elif field == "event":
            event = value
            if value == "end":
                return latencies
        elif field == "data" and event == "metric":
            latencies.append(time.time() - json.loads(value)["time"])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def report(name: str, args: argparse.Namespace, latencies: list[float], seconds: float) -> None:
    label = name if name == "embedded" else f"redis + {args.redis_database}"
    label = "embedded (sqlite + filesystem broker, polling)" if name == "embedded" else f"{label} (pub/sub)"
    if not latencies:
        print(f"[{name}] no metric events received")
        return
    ms = [1000 * x for x in latencies]
    print(f"[{name}] {label}: {len(ms)} points over {seconds:.1f} s; latency ms "
          f"p50 {statistics.median(ms):.0f}  p95 {percentile(ms, 95):.0f}  p99 {percentile(ms, 99):.0f}  "
          f"max {max(ms):.0f}", flush=True)


if __name__ == "__main__":
    main()
