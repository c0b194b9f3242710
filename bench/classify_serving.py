"""Serving benchmark: classify over the real API, end to end, against today's path and the old one.

    .venv/bin/python bench/classify_serving.py [--requests 200] [--clients 50] [--seconds 5] [--epochs 2000]
                                      [--train-threads 0] [--tiny]

In a fresh temporary data folder (SQLite; DATABASE_URL and CELERY_BROKER_URL are honoured when set:
point DATABASE_URL at a database of the bench's own, it is migrated and gets a user; a Redis broker's
database is flushed first, it must be the bench's own, e.g. redis://127.0.0.1:6379/13): migrate, a
user and API token, scikit-learn's digits ingested (28x28 grayscale), then the processes that
`manage.py serve` starts (workbench.processes): uvicorn, a training worker (`train`,
concurrency 2) and a serving worker (`infer`, WORKBENCH_SERVING_CONCURRENCY). A 1-epoch LeNet job
trained through them leaves the snapshot that every request classifies: one real digit (an 8x8
scikit-learn digit scaled to a 28x28 PNG) posted as multipart to `POST /api/v1/jobs/{id}/classify/`
with the token, each client on an http.client connection of its own (keep-alive).

Case A, latency (one client, --requests sequential requests after 5 warm-up calls; p50/p95/p99):
  idle        the serving worker as shipped, nothing training
  training    the same while two long LeNet jobs (--epochs) train on the training worker (the target)
  old, cold   the same two jobs training, and a serving worker that polls the embedded broker every
              50 ms and keeps no model warm (WORKBENCH_SERVING_POLL_SECONDS=0.05,
              WORKBENCH_SERVING_CACHE_MB=0): the old path when it answered at all
  old, busy   one worker for train,background,infer (concurrency 2) with both slots training, as
              before the serving worker: one request, which gets no answer within the 10 s timeout
Case B, throughput (nothing training): --clients threads send requests for --seconds; images/s
and p50/p95/max latency, with batching (as shipped) and without (WORKBENCH_SERVING_MAX_BATCH=1, the
one-at-a-time rate), over HTTP and directly through serving.client.ask from threads in this process
(no web server: where the limit is). The serving worker's batch statistics (its Worker row's
`serving`, reported every second here) and the web and serving processes' CPU (/proc, in cores) are
printed beside each.
--tiny: a few requests a case, 4 clients for 1 s, one training job of 3 epochs: a check that the
benchmark still works (tests/bench), not a figure.
"""
from __future__ import annotations

import argparse
import http.client
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import live_latency as base  # noqa: E402  (its set-up: user, token, digits, percentile)

from workbench.processes import free_port, listening, start, stop, web_command, worker_command, worker_ready  # noqa: E402

OLD_COLD = {"WORKBENCH_SERVING_POLL_SECONDS": "0.05", "WORKBENCH_SERVING_CACHE_MB": "0"}
NO_BATCHING = {"WORKBENCH_SERVING_MAX_BATCH": "1"}
BOUNDARY = "wb-bench-serving"


# --- set-up -----------------------------------------------------------------------------------

def environment(data_dir: str, args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DJANGO_SETTINGS_MODULE="workbench.settings", WORKBENCH_DATA_DIR=data_dir, PYTHONUNBUFFERED="1",
               LOG_LEVEL="WARNING", WORKBENCH_WORKER_REPORT_SECONDS="1")
    if args.train_threads:
        env["WORKBENCH_TORCH_THREADS"] = str(args.train_threads)
    return env


def flush_redis(url: str) -> None:
    """Queued messages of an earlier run would train or answer this run's rows of the same ids."""
    if url.startswith("redis"):
        import redis

        redis.Redis.from_url(url).flushdb()


def create_job(owner, dataset, epochs: int, name: str) -> int:  # type: ignore[no-untyped-def]
    from jobs.services import JobSettings, job_create

    return job_create(owner=owner, dataset=dataset, network="lenet",
                      options=JobSettings(name=name, epochs=epochs, device="cpu")).pk


def wait_for(what: str, ready: Callable[[], bool], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)


def job_status(pk: int) -> str:
    from jobs.models import TrainingJob

    return str(TrainingJob.objects.values_list("status", flat=True).get(pk=pk))


def digit_png() -> bytes:
    """One of scikit-learn's digits (a 3), scaled from 8x8 to 28x28 as a real upload would be."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.round(digits.images[3] * 255 / 16).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").resize((28, 28), Image.BILINEAR).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Stack:
    """The processes `manage.py serve` runs, started and replaced one by one."""
    env: dict[str, str]
    data_dir: Path
    port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start_web(self) -> None:
        self.procs["web"] = start(web_command("127.0.0.1", self.port), env=self.env, log=self.data_dir / "web.log",
                                  ready=lambda: listening(self.port), what="uvicorn")

    def start_worker(self, role: str, queues: str, concurrency: int, **extra: str) -> None:
        log = self.data_dir / f"{role}.log"
        command = worker_command(queues=queues, name=f"bench-{os.getpid()}-{role}", concurrency=concurrency)
        self.procs[role] = start(command, env={**self.env, **extra}, log=log, ready=worker_ready(log),
                                 what=f"{role} worker")

    def stop(self, role: str) -> None:
        stop(self.procs.pop(role))

    def stop_all(self) -> None:
        for role in list(self.procs):
            self.stop(role)

    def serving_stats(self) -> dict[str, int]:
        """The serving worker's batch counters as its Worker row last reported them."""
        from workers.models import Worker

        row = Worker.objects.filter(pid=self.procs["serving"].pid).values_list("serving", flat=True).first()
        return {key: (row or {}).get(key, 0) for key in ("batches", "requests", "largest_batch")}


# --- clients ----------------------------------------------------------------------------------

class ApiClient:
    """One client with its own keep-alive connection, posting the digit to classify."""

    def __init__(self, port: int, pk: int, token: str, png: bytes, timeout: float = 30) -> None:
        self.port, self.path, self.timeout = port, f"/api/v1/jobs/{pk}/classify/", timeout
        self.body = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="digit.png"\r\n'
                     f"Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{BOUNDARY}--\r\n".encode()
        self.headers = {"Authorization": f"Token {token}", "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def classify(self) -> tuple[int, float, bytes]:
        started = time.perf_counter()
        try:
            self.conn.request("POST", self.path, body=self.body, headers=self.headers)
        except (BrokenPipeError, ConnectionResetError):  # the server closed an idle keep-alive: anew, once
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            started = time.perf_counter()
            self.conn.request("POST", self.path, body=self.body, headers=self.headers)
        try:
            response = self.conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()  # a fresh connection next time
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            raise
        return response.status, time.perf_counter() - started, body

    def close(self) -> None:
        self.conn.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def summary(ms: list[float]) -> str:
    if not ms:
        return "no answers"
    return (f"p50 {statistics.median(ms):.1f}  p95 {base.percentile(ms, 95):.1f}  p99 {base.percentile(ms, 99):.1f}  "
            f"max {max(ms):.1f} ms")


def latency(client: ApiClient, count: int) -> tuple[list[float], int]:
    """Milliseconds of `count` sequential requests after 5 warm-up calls, and how many failed."""
    for _ in range(5):
        client.classify()
    ms, failed = [], 0
    for _ in range(count):
        status, seconds, _ = client.classify()
        if status == 200:
            ms.append(1000 * seconds)
        else:
            failed += 1
    return ms, failed


def hammer(count: int, seconds: float, send: Callable[[], bool]) -> tuple[list[float], int, float]:
    """`count` threads calling `send` (True when answered) for `seconds`: answered latencies in ms,
    failures, and the wall time from the first start to the last answer."""
    results: list[list[float]] = [[] for _ in range(count)]
    failures = [0] * count
    go = threading.Barrier(count + 1)

    def loop(i: int) -> None:
        go.wait()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                ok = send()
            except Exception:  # noqa: BLE001 - a refused or dropped request counts as a failure
                ok = False
            if ok:
                results[i].append(1000 * (time.perf_counter() - started))
            else:
                failures[i] += 1

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    go.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return [x for r in results for x in r], sum(failures), time.perf_counter() - began


# --- the cases --------------------------------------------------------------------------------

def case_latency(stack: Stack, client: ApiClient, count: int, label: str) -> None:
    """Sequential requests' latency, and the web's and serving worker's CPU per request."""
    before = {name: cpu_seconds(stack.procs[name].pid) for name in ("web", "serving")}
    ms, failed = latency(client, count)
    cpu = {name: 1000 * (cpu_seconds(stack.procs[name].pid) - value) / (count + 5) for name, value in before.items()}
    print(f"A {label:<46} {len(ms)} requests: {summary(ms)}; CPU ms a request: web {cpu['web']:.1f}, "
          f"serving {cpu['serving']:.1f}" + (f"  ({failed} failed)" if failed else ""), flush=True)


def train_long(owner, dataset, jobs: int, epochs: int) -> list[int]:  # type: ignore[no-untyped-def]
    """`jobs` LeNet jobs of `epochs`, once each has reported a point (all of them train)."""
    from jobs.models import MetricPoint

    pks = [create_job(owner, dataset, epochs, f"load {i}") for i in range(jobs)]
    wait_for("the load jobs running", lambda: all(  # a --tiny job may be done already
        job_status(pk) in ("running", "done") and MetricPoint.objects.filter(job_id=pk).exists() for pk in pks))
    return pks


def end_jobs(pks: list[int]) -> None:
    from jobs.models import TrainingJob

    TrainingJob.objects.filter(pk__in=pks).update(abort_requested=True)
    wait_for("the load jobs ending", lambda: all(job_status(pk) not in ("queued", "running") for pk in pks))


def case_old_busy(stack: Stack, client: ApiClient, owner, dataset, jobs: int, epochs: int) -> None:  # type: ignore[no-untyped-def]
    """Before the serving worker: one worker for every queue, both of its slots training."""
    stack.stop("train")
    stack.stop("serving")
    stack.start_worker("train", "train,background,infer", 2)
    pks = train_long(owner, dataset, jobs, epochs)
    try:
        status, seconds, body = client.classify()
    except (OSError, http.client.HTTPException) as exc:
        status, seconds, body = 0, client.timeout, str(exc).encode()
    answer = "answered" if status == 200 else "no answer"
    print(f"A old, busy: one worker for train,background,infer, {len(pks)} of its 2 slots training: {answer} "
          f"(HTTP {status} after {seconds:.1f} s: {body[:120].decode(errors='replace')})", flush=True)
    end_jobs(pks)
    stack.stop("train")


def case_throughput(stack: Stack, port: int, pk: int, token: str, png: bytes, direct: Callable[[], object],
                    clients: int, seconds: float, label: str) -> dict[str, float]:
    """`clients` over HTTP, then as many threads asking the serving layer directly: images/s of each."""
    conns = threading.local()

    def over_http() -> bool:
        if not hasattr(conns, "client"):
            conns.client = ApiClient(port, pk, token, png)
        return conns.client.classify()[0] == 200

    def straight() -> bool:
        direct()
        return True

    rates = {}
    for how, send in (("HTTP", over_http), ("direct", straight)):
        hammer(min(clients, 4), 0.5, send)  # warm-up: connections, the model, the answers thread
        time.sleep(1.5)  # the worker's report catches up
        before, cpu = stack.serving_stats(), {name: cpu_seconds(stack.procs[name].pid) for name in ("web", "serving")}
        ms, failed, wall = hammer(clients, seconds, send)
        used = {name: (cpu_seconds(stack.procs[name].pid) - value) / wall for name, value in cpu.items()}
        time.sleep(1.5)
        after = stack.serving_stats()
        batches, requests = after["batches"] - before["batches"], after["requests"] - before["requests"]
        print(f"B {label:<13} {how:<6} {clients} clients: {len(ms) / wall:.0f} images/s; latency {summary(ms)}"
              + (f"; {failed} failed" if failed else ""), flush=True)
        print(f"  {'':<20}serving worker: {batches} batches for {requests} requests "
              f"(mean {requests / max(batches, 1):.1f}, largest since start {after['largest_batch']}); CPU cores "
              f"web {used['web']:.2f}, serving {used['serving']:.2f}", flush=True)
        rates[how] = len(ms) / wall
    return rates


# --- the run ----------------------------------------------------------------------------------

def run(args: argparse.Namespace, data_dir: Path) -> None:
    import django

    django.setup()
    import numpy as np
    from django.conf import settings
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command

    from jobs.inference import preprocess
    from jobs.models import TrainingJob
    from jobs.selectors import job_snapshot
    from serving import client as serving

    flush_redis(settings.CELERY_BROKER_URL)
    call_command("migrate", verbosity=0)
    token, owner = base.make_user()
    dataset = base.ingest_digits(owner, data_dir)
    stack = Stack(os.environ.copy(), data_dir)
    print(f"broker {settings.CELERY_BROKER_URL.split('://')[0]}, database {settings.DATABASES['default']['ENGINE']}, "
          f"{os.cpu_count()} CPUs; batch window {settings.WORKBENCH_SERVING_BATCH_WINDOW_MS:g} ms, "
          f"max batch {settings.WORKBENCH_SERVING_MAX_BATCH}, serving concurrency "
          f"{settings.WORKBENCH_SERVING_CONCURRENCY}", flush=True)
    try:
        stack.start_web()
        stack.start_worker("train", "train", 2)  # as `manage.py serve` runs it (niced: WORKBENCH_TRAIN_NICE)
        stack.start_worker("serving", "infer", settings.WORKBENCH_SERVING_CONCURRENCY)
        pk = create_job(owner, dataset, 1, "served")
        wait_for("the served job", lambda: job_status(pk) in ("done", "error"))
        job = TrainingJob.objects.get(pk=pk)
        png = digit_png()
        pixels = preprocess(job=job, image=SimpleUploadedFile("digit.png", png, "image/png"))
        weights = str(job.folder / job_snapshot(job=job, epoch=None).path)
        client = ApiClient(stack.port, pk, token, png, timeout=settings.WORKBENCH_SERVING_TIMEOUT + 5)
        status, _, body = client.classify()
        print(f"job {pk} ({job.status}), first classify: HTTP {status} {body[:100].decode(errors='replace')}...",
              flush=True)

        case_latency(stack, client, args.requests, "idle (new serving worker, nothing training)")
        load = train_long(owner, dataset, args.jobs, args.epochs)
        case_latency(stack, client, args.requests, f"new, {len(load)} jobs training")
        stack.stop("serving")
        stack.start_worker("serving", "infer", settings.WORKBENCH_SERVING_CONCURRENCY, **OLD_COLD)
        case_latency(stack, client, args.requests, f"old, cold (poll 50 ms, no cache), {len(load)} training")
        end_jobs(load)
        case_old_busy(stack, client, owner, dataset, args.jobs, args.epochs)
        client.close()

        def direct() -> object:
            return serving.ask("jobs.classify", job.backend, weights, images=pixels[np.newaxis])

        rates = {}
        for label, extra in (("batching", {}), ("one at a time", NO_BATCHING)):
            stack.start_worker("serving", "infer", settings.WORKBENCH_SERVING_CONCURRENCY, **extra)
            rates[label] = case_throughput(stack, stack.port, pk, token, png, direct, args.clients, args.seconds, label)
            stack.stop("serving")
        for how in ("HTTP", "direct"):
            ratio = rates["batching"][how] / max(rates["one at a time"][how], 1e-9)
            print(f"B {how:<6} batching / one at a time: {ratio:.2f}x", flush=True)
    finally:
        stack.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="sequential requests per latency case")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0, help="per throughput case")
    parser.add_argument("--jobs", type=int, default=2, help="training jobs running during case A")
    parser.add_argument("--epochs", type=int, default=2000, help="of each training job (it is aborted after use)")
    parser.add_argument("--train-threads", type=int, default=0,
                        help="WORKBENCH_TORCH_THREADS of the training worker (0: torch's default, as shipped)")
    parser.add_argument("--tiny", action="store_true", help="seconds, not a figure: a check that it still runs")
    args = parser.parse_args()
    if args.tiny:
        args.requests, args.clients, args.seconds, args.jobs, args.epochs = 5, 4, 1.0, 1, 3
    with tempfile.TemporaryDirectory(prefix="wb-bench-serving-") as data_dir:
        os.environ.update(environment(data_dir, args))
        try:
            run(args, Path(data_dir))
        finally:
            from django.db import connections

            connections.close_all()


if __name__ == "__main__":
    main()
