"""Compare load benchmark: the compare API and page for 10 jobs of 10,000 points each.

    .venv/bin/python bench/compare_load.py [--jobs 10] [--points 10000] [--requests 30] [--no-browser] [--tiny]

In a fresh temporary data folder on SQLite (the embedded default): migrate, a user, one ready
Dataset row, --jobs done TrainingJob rows with --points MetricPoint rows each, bulk-inserted as a
run reports them (train loss and learning rate every step, val loss and val accuracy every 49
steps). Then a real uvicorn server as a subprocess, a token and a logged-in session, and, on one
kept-alive connection, 5 warm-up requests then --requests timed ones, one after another:
  api        GET /api/v1/compare/?jobs=...            (token; default max_points 2000 per curve)
  api x=time GET /api/v1/compare/?jobs=...&x=time     (token)
  api 1000   GET /api/v1/compare/?jobs=...&max_points=1000   (token; what the page asks)
  page       GET /compare/?jobs=...                   (the session; the HTML around the charts)
the first request of each timed separately (cold: compare.selectors caches a finished job's
series, so the timed ones after the warm-up are warm), and, unless --no-browser, the page as a person sees it in headless Chromium (Playwright): from
navigation to the four charts drawn (window.compareReady), --browser-loads times.
Prints median and p95 per case in ms. Reuses bench/scale.py's set-up and client helpers.
--tiny: 2 jobs of 300 points, 2 requests each and one browser load (skipped, saying so, without
/usr/bin/chromium): a check that the benchmark still works (tests/bench), not a figure.
"""
from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.scale import (  # noqa: E402
    PASSWORD,
    USERNAME,
    ci_running,
    get_token,
    insert_points,
    log_in,
    make_dataset,
    make_user,
    p95,
    scratch_data,
    time_requests,
)
from workbench.processes import free_port, listening, start, stop, web_command  # noqa: E402

VAL_EVERY = 49  # 4,900 steps of (train loss, lr) and 100 of (val loss, val accuracy): 10,000 points
CHROMIUM = "/usr/bin/chromium"


def job_points(job_id: int, points: int, lr: float) -> Iterator[tuple[Any, ...]]:
    steps = points * VAL_EVERY // (2 * VAL_EVERY + 2)
    t0, left = time.time() - 86400, points
    for step in range(1, steps + 1):
        epoch, when = step / 490, t0 + step * 0.02
        rows = [("train", "loss", 2.3 / (1 + step * lr / 10)), ("train", "lr", lr)]
        if step % VAL_EVERY == 0:
            rows += [("val", "loss", 2.0 / (1 + step * lr / 10)), ("val", "accuracy", 1 - 0.9 / (1 + step * lr / 10))]
        for split, name, value in rows:
            if left <= 0:
                return
            left -= 1
            yield job_id, split, name, epoch, step, value, when


def fill(jobs: int, points: int) -> tuple[list[int], int, float]:
    from django.utils import timezone

    from jobs.models import MetricPoint, TrainingJob

    started = time.perf_counter()
    owner = make_user()
    dataset = make_dataset(owner)
    ids = []
    for i in range(jobs):
        job = TrainingJob.objects.create(owner=owner, dataset=dataset, name=f"compare {i}", network="lenet",
                                         network_spec={}, status="done", finished_at=timezone.now(),
                                         learning_rate=0.001 * (i + 1),
                                         batch_size=32 * (1 + i % 3), best={"val_accuracy": 0.9, "val_loss": 0.3})
        insert_points(job_points(job.pk, points, job.learning_rate))
        ids.append(job.pk)
    return ids, MetricPoint.objects.count(), time.perf_counter() - started


def browser_loads(port: int, path: str, count: int) -> list[float]:
    """Milliseconds from navigation to the charts drawn, in headless Chromium, after one warm-up."""
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = chromium.new_context(base_url=f"http://127.0.0.1:{port}").new_page()
        page.goto("/accounts/login/")
        page.fill("#id_username", USERNAME)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_load_state("load")
        for i in range(count + 1):
            started = time.perf_counter()
            page.goto(path)
            page.wait_for_function("() => window.compareReady === true", timeout=60_000)
            if i:
                times.append((time.perf_counter() - started) * 1000)
        chromium.close()
    return times


def first_request(port: int, path: str, headers: dict[str, str]) -> float:
    """Milliseconds of the first request: a finished job's series are not cached yet (compare.selectors)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        conn.getresponse().read()
        return (time.perf_counter() - started) * 1000
    finally:
        conn.close()


def report(label: str, times: list[float], size: int | None = None, cold: float | None = None) -> None:
    extra = f"  ({size:,} bytes)" if size is not None else ""
    extra += f"  first (cold) {cold:.0f} ms" if cold is not None else ""
    print(f"{label:34s} median {statistics.median(times):7.1f} ms  p95 {p95(times):7.1f} ms{extra}", flush=True)


def measure(args: argparse.Namespace, data_dir: Path) -> None:
    import django

    django.setup()
    ids, total, seconds = fill(args.jobs, args.points)
    print(f"fill: {seconds:.1f} s; {len(ids)} jobs, {total:,} metric points", flush=True)
    from django.db import connections

    connections.close_all()
    port = free_port()
    web = start(web_command("127.0.0.1", port), env=dict(os.environ), log=data_dir / "web.log",
                ready=lambda: listening(port), what="uvicorn")
    jobs = ",".join(map(str, ids))
    try:
        token, cookie = get_token(port), log_in(port)
        for label, path, headers in [
                ("GET /api/v1/compare/ (x=epoch)", f"/api/v1/compare/?jobs={jobs}", {"Authorization": f"Token {token}"}),
                ("GET /api/v1/compare/ (x=time)", f"/api/v1/compare/?jobs={jobs}&x=time",
                 {"Authorization": f"Token {token}"}),
                ("GET /api/v1/compare/ (the page's 1000)", f"/api/v1/compare/?jobs={jobs}&max_points=1000",
                 {"Authorization": f"Token {token}"}),
                ("GET /compare/ (HTML)", f"/compare/?jobs={jobs}", {"Cookie": cookie})]:
            cold = first_request(port, path, headers)
            times, size = time_requests(port, path, headers, args.requests)
            report(label, times, size, cold)
        if not args.no_browser:
            report("Chromium: navigation to charts drawn", browser_loads(port, f"/compare/?jobs={jobs}",
                                                                         args.browser_loads))
    finally:
        stop(web)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--browser-loads", type=int, default=10)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="seconds, not a figure: a check that it still runs")
    args = parser.parse_args()
    if args.tiny:
        args.jobs, args.points, args.requests, args.browser_loads = 2, 300, 2, 1
    if not args.no_browser and not Path(CHROMIUM).exists():
        print(f"Chromium skipped: no {CHROMIUM} here", flush=True)
        args.no_browser = True
    loaded = ci_running()
    with scratch_data("sqlite", "wb-bench-compare-") as data_dir:
        measure(args, data_dir)
    if loaded or ci_running():
        print("note: a pytest run was loading the machine during this measurement", flush=True)


if __name__ == "__main__":
    main()
