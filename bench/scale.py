"""Scale benchmark: the job list, the Jobs page and one long curve, with 10,000 jobs and 1,000,000 points.

    .venv/bin/python bench/scale.py [--backend sqlite|postgres] [--jobs 10000] [--points 1000000]
                                    [--requests 50] [--tiny]

In a fresh temporary data folder, on SQLite (the embedded default) or PostgreSQL (database
bench_scale at 127.0.0.1:5432, dropped and created again through psql so runs are repeatable):
migrate (a `manage.py migrate` subprocess), a user, then a fast fill with bulk inserts: one ready
Dataset row (no files), --jobs TrainingJob rows for the user (LeNet; mostly done, a few running or
queued; `best` and `latest` filled), one Snapshot each, and --points MetricPoint rows: 100,000 train
loss points (steps 1..100,000) plus 200 val points for one chosen job (the newest), the rest spread
as train loss over the other jobs. Then a real uvicorn server as a subprocess on the same data
folder and database, a token from `POST /api/v1/auth/token/` and a session from the login form, and,
each on one kept-alive connection, 5 warm-up requests then --requests timed ones, one after another:
  list      GET /api/v1/jobs/                       (token; the first page, 50 jobs)
  page      GET /jobs/                              (the session; the HTML Jobs page)
  metrics   GET /api/v1/jobs/{id}/metrics/?max_points=2000   (token; the chosen job; the web process
            keeps the cut of a run whose points did not change, so this is the kept answer)
  cut anew  the same with max_points 1900, 1901, ... (a new cut each time: the database's work)
Prints row counts, the fill time, median and p95 per request in ms, and PASS/MISS against the
target (p95 under 100 ms). Notes when a pytest run was loading the machine.
--tiny: 20 jobs, 3,000 points, 2 requests each: a check that the benchmark still works
(tests/bench), not a figure.
"""
from __future__ import annotations

import argparse
import http.client
import http.cookiejar
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from workbench.processes import free_port, listening, start, stop, web_command  # noqa: E402

PG_DATABASE = "bench_scale"
PG_URL = f"postgres://root@127.0.0.1:5432/{PG_DATABASE}"
TARGET_MS = 100.0
WARMUP = 5
BATCH = 5000
CHOSEN_TRAIN = 100_000  # train loss points of the chosen job
CHOSEN_VAL_EVERY = 1000  # a val loss and a val accuracy point every this many steps
USERNAME, PASSWORD = "bench", "bench-password"


# --- set-up -----------------------------------------------------------------------------------

def environment(backend: str, data_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL",
                                                            "WORKBENCH_LIVE_REDIS_URL", "DEBUG")}
    # A heartbeat timeout of a day: the few `running` rows have no worker, and the list's
    # take-back of stale jobs must not change them while the benchmark runs.
    env.update(DJANGO_SETTINGS_MODULE="workbench.settings", WORKBENCH_DATA_DIR=data_dir, PYTHONUNBUFFERED="1",
               LOG_LEVEL="WARNING", WORKBENCH_HEARTBEAT_TIMEOUT="86400")
    if backend == "postgres":
        env["DATABASE_URL"] = PG_URL
    return env


def reset_postgres() -> None:
    for sql in (f"DROP DATABASE IF EXISTS {PG_DATABASE}", f"CREATE DATABASE {PG_DATABASE}"):
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "root", "-d", "postgres", "-q", "-c", sql],
                       check=True, capture_output=True)


def migrate(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "--verbosity", "0"], cwd=ROOT, env=env,
                   check=True)


def make_user() -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(USERNAME, password=PASSWORD)


# --- the fill ---------------------------------------------------------------------------------

def make_dataset(owner: Any) -> Any:
    from datasets.models import Dataset

    return Dataset.objects.create(
        owner=owner, name="scale digits", source=Dataset.Source.EXAMPLE, source_name="digits", image_width=28,
        image_height=28, channels=1, resize_mode="squash", val_percent=10, test_percent=10, seed=0,
        status=Dataset.Status.READY, progress=1.0, classes=[str(d) for d in range(10)],
        split_counts={"train": 1438, "val": 179, "test": 180}, class_counts={})


def job_status(index: int) -> str:
    if index % 997 == 1:
        return "running"
    if index % 1009 == 2:
        return "queued"
    return "done"


def make_jobs(owner: Any, dataset: Any, count: int) -> list[int]:
    """The jobs' ids, oldest first."""
    from django.utils import timezone

    from jobs.models import TrainingJob

    rng = random.Random(0)
    now = timezone.now()
    rows = []
    for i in range(count):
        status = job_status(i)
        accuracy, loss = 0.9 + rng.random() * 0.09, 0.05 + rng.random() * 0.3
        metrics = {"epoch": 10.0, "val_accuracy": accuracy, "val_loss": loss, "train_loss": loss * 0.8}
        rows.append(TrainingJob(
            owner=owner, dataset=dataset, name=f"scale job {i:05d}", network="lenet", network_spec={},
            status=status, progress=1.0 if status == "done" else 0.0 if status == "queued" else 0.5,
            epoch=10.0 if status == "done" else 0.0, device_used="cpu", attempt=0 if status == "queued" else 1,
            heartbeat_at=now if status == "running" else None, started_at=None if status == "queued" else now,
            finished_at=now if status == "done" else None,
            best={} if status == "queued" else {"val_accuracy": accuracy, "val_loss": loss, "epoch": 9.0},
            latest={} if status == "queued" else metrics))
    TrainingJob.objects.bulk_create(rows, batch_size=BATCH)
    return list(TrainingJob.objects.filter(owner=owner).order_by("id").values_list("id", flat=True))


def make_snapshots(job_ids: list[int]) -> None:
    from jobs.models import Snapshot

    Snapshot.objects.bulk_create([Snapshot(job_id=pk, epoch=1.0, step=1000, path="snapshots/epoch_1.safetensors")
                                  for pk in job_ids], batch_size=BATCH)


def chosen_points(job_id: int, budget: int) -> Iterator[tuple[Any, ...]]:
    """Train loss at steps 1..100,000 and val loss and accuracy every 1,000 steps (within budget)."""
    t0 = time.time() - 86400
    train = min(CHOSEN_TRAIN, budget)
    for step in range(1, train + 1):
        yield job_id, "train", "loss", step / 1000, step, 2.3 / (1 + step / 5000), t0 + step * 0.01
    left = budget - train
    for step in range(CHOSEN_VAL_EVERY, train + 1, CHOSEN_VAL_EVERY):
        for name, value in (("loss", 2.0 / (1 + step / 5000)), ("accuracy", 1 - 0.9 / (1 + step / 5000))):
            if left <= 0:
                return
            left -= 1
            yield job_id, "val", name, step / 1000, step, value, t0 + step * 0.01


def other_points(job_ids: list[int], budget: int) -> Iterator[tuple[Any, ...]]:
    """Train loss points spread evenly over the other jobs."""
    if not job_ids or budget <= 0:
        return
    each, extra = divmod(budget, len(job_ids))
    t0 = time.time() - 86400
    for i, pk in enumerate(job_ids):
        for step in range(1, each + (1 if i < extra else 0) + 1):
            yield pk, "train", "loss", step / 100, step, 2.3 / (1 + step / 50), t0 + step


def insert_points(rows: Iterator[tuple[Any, ...]]) -> int:
    from django.db import connection, transaction

    from jobs.models import MetricPoint

    quote = connection.ops.quote_name
    columns = ", ".join(quote(c) for c in ("job_id", "split", "name", "epoch", "step", "value", "time"))
    sql = f"INSERT INTO {quote(MetricPoint._meta.db_table)} ({columns}) VALUES (%s, %s, %s, %s, %s, %s, %s)"
    total, batch = 0, []
    with transaction.atomic(), connection.cursor() as cursor:
        for row in rows:
            batch.append(row)
            if len(batch) >= BATCH:
                cursor.executemany(sql, batch)
                total, batch = total + len(batch), []
        if batch:
            cursor.executemany(sql, batch)
            total += len(batch)
    return total


def analyze(backend: str) -> None:
    """PostgreSQL's autovacuum would analyze the new tables soon anyway; done now so that the plans
    are the ones a settled database gets. SQLite is left as the product leaves it."""
    if backend != "postgres":
        return
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def fill(backend: str, jobs: int, points: int) -> tuple[int, dict[str, int], float]:
    """The chosen job's id, the row counts and the seconds the fill took."""
    from datasets.models import Dataset
    from jobs.models import MetricPoint, Snapshot, TrainingJob

    started = time.perf_counter()
    owner = make_user()
    dataset = make_dataset(owner)
    job_ids = make_jobs(owner, dataset, jobs)
    make_snapshots(job_ids)
    chosen, others = job_ids[-1], job_ids[:-1]
    done = insert_points(chosen_points(chosen, points))
    insert_points(other_points(others, points - done))
    analyze(backend)
    seconds = time.perf_counter() - started
    counts = {"datasets": Dataset.objects.count(), "jobs": TrainingJob.objects.count(),
              "snapshots": Snapshot.objects.count(), "metric points": MetricPoint.objects.count(),
              "chosen job's points": MetricPoint.objects.filter(job_id=chosen).count()}
    return chosen, counts, seconds


# --- the client -------------------------------------------------------------------------------

def get_token(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = json.dumps({"username": USERNAME, "password": PASSWORD})
        conn.request("POST", "/api/v1/auth/token/", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"the token endpoint answered {response.status}: {data[:300]!r}")
        return str(json.loads(data)["token"])
    finally:
        conn.close()


def log_in(port: int) -> str:
    """The Cookie header of a logged-in session, through the real login form."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    base = f"http://127.0.0.1:{port}"
    page = opener.open(f"{base}/accounts/login/", timeout=30).read().decode()
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if match is None:
        raise RuntimeError("no csrfmiddlewaretoken on the login page")
    form = urllib.parse.urlencode({"username": USERNAME, "password": PASSWORD,
                                   "csrfmiddlewaretoken": match.group(1)}).encode()
    opener.open(urllib.request.Request(f"{base}/accounts/login/", data=form,
                                       headers={"Referer": f"{base}/accounts/login/"}), timeout=30).read()
    cookies = {c.name: c.value for c in jar}
    if "sessionid" not in cookies:
        raise RuntimeError("the login form did not start a session")
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


def time_requests(port: int, path: str, headers: dict[str, str], count: int) -> tuple[list[float], int]:
    """Milliseconds per request (after the warm-up) on one kept-alive connection, and the last body's size.
    A `{i}` in the path is the request's number (a new URL each time)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times: list[float] = []
    size = 0
    try:
        for i in range(WARMUP + count):
            started = time.perf_counter()
            conn.request("GET", path.replace("{i}", str(i)), headers=headers)
            response = conn.getresponse()
            body = response.read()
            elapsed = (time.perf_counter() - started) * 1000
            if response.status != 200:
                raise RuntimeError(f"GET {path} answered {response.status}: {body[:300]!r}")
            if i >= WARMUP:
                times.append(elapsed)
            size = len(body)
    finally:
        conn.close()
    return times, size


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18] if len(values) > 1 else values[0]


def check_bodies(port: int, token: str, chosen: int) -> str:
    """One look at what the timed requests return, so the figures are for real answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {"Authorization": f"Token {token}"}
        conn.request("GET", "/api/v1/jobs/", headers=headers)
        listing = json.loads(conn.getresponse().read())
        conn.request("GET", f"/api/v1/jobs/{chosen}/metrics/?max_points=2000", headers=headers)
        metrics = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    rows = listing.get("results", listing) if isinstance(listing, dict) else listing
    points = metrics.get("points", metrics.get("results", [])) if isinstance(metrics, dict) else metrics
    total = listing.get("count") if isinstance(listing, dict) else None
    return f"list: {len(rows)} jobs on the first page (count {total}); metrics: {len(points)} points returned"


# --- the run ----------------------------------------------------------------------------------

def ci_running() -> bool:
    found = subprocess.run(["pgrep", "-f", "pytest"], capture_output=True, text=True).stdout.split()
    return any(int(pid) != os.getpid() for pid in found)


def measure(args: argparse.Namespace, data_dir: Path) -> None:
    import django

    django.setup()
    chosen, counts, seconds = fill(args.backend, args.jobs, args.points)
    print(f"[{args.backend}] fill: {seconds:.1f} s; " + ", ".join(f"{k} {v:,}" for k, v in counts.items()), flush=True)
    from django.db import connections

    connections.close_all()
    port = free_port()
    web = start(web_command("127.0.0.1", port), env=dict(os.environ), log=data_dir / "web.log",
                ready=lambda: listening(port), what="uvicorn")
    try:
        token = get_token(port)
        cookie = log_in(port)
        print(f"[{args.backend}] {check_bodies(port, token, chosen)}", flush=True)
        cases = [("GET /api/v1/jobs/", "/api/v1/jobs/", {"Authorization": f"Token {token}"}),
                 ("GET /jobs/ (HTML)", "/jobs/", {"Cookie": cookie}),
                 ("GET metrics max_points=2000", f"/api/v1/jobs/{chosen}/metrics/?max_points=2000",
                  {"Authorization": f"Token {token}"}),
                 # A new max_points each time: never the kept cut, always the database's work.
                 ("GET metrics, cut anew each time", f"/api/v1/jobs/{chosen}/metrics/?max_points=19{{i}}",
                  {"Authorization": f"Token {token}"})]
        for label, path, headers in cases:
            times, size = time_requests(port, path, headers, args.requests)
            median, high = statistics.median(times), p95(times)
            verdict = "PASS" if high < TARGET_MS else "MISS"
            print(f"[{args.backend}] {label:30s} median {median:7.1f} ms  p95 {high:7.1f} ms  "
                  f"({size:,} bytes)  {verdict} (p95 < {TARGET_MS:.0f} ms)", flush=True)
    finally:
        stop(web)


@contextmanager
def scratch_data(backend: str, prefix: str) -> Iterator[Path]:
    """A fresh temporary data folder and database, migrated, with this process's environment on them."""
    with tempfile.TemporaryDirectory(prefix=prefix) as data_dir:
        env = environment(backend, data_dir)
        if backend == "postgres":
            reset_postgres()
        os.environ.update(env)
        for key in ("DATABASE_URL", "CELERY_BROKER_URL", "WORKBENCH_LIVE_REDIS_URL", "DEBUG"):
            if key not in env:
                os.environ.pop(key, None)
        migrate(env)
        try:
            yield Path(data_dir)
        finally:
            from django.db import connections

            connections.close_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--tiny", action="store_true", help="seconds, not a figure: a check that it still runs")
    args = parser.parse_args()
    if args.tiny:
        args.jobs, args.points, args.requests = 20, 3000, 2
    if args.jobs < 1 or args.requests < 1 or args.points < 0:
        parser.error("--jobs and --requests must be at least 1, --points at least 0")
    loaded = ci_running()
    with scratch_data(args.backend, "wb-bench-scale-") as data_dir:
        measure(args, data_dir)
    if loaded or ci_running():
        print(f"[{args.backend}] note: a pytest run was loading the machine during this measurement", flush=True)


if __name__ == "__main__":
    main()
