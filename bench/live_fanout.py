"""Live-curve fan-out benchmark: 1, 50 and 200 SSE clients on one running job.

    .venv/bin/python bench/live_fanout.py [--backend embedded|redis] [--clients 1,50,200] [--epochs 8]
                                          [--burst 200] [--burst-spread 1] [--burst-window 2] [--tiny]

The set-up of live_latency.py, one back-end per run: `embedded` (SQLite + the filesystem broker,
so the streams' watcher polls) or `redis` (Redis pub/sub wake-ups, PostgreSQL database wb_bench,
dropped and created through psql). A fresh data folder, migrate, a user and token, the digits example, a
real celery worker and a real uvicorn server. For each client count, a new LeNet job and that
many clients (one thread each, http.client) on `GET /api/v1/jobs/{id}/events/` until `end`.
Prints, per count: p50/p95 latency from the worker's report (`time` in each point) to a client's
receipt over all clients' points reported after every client was connected, and the web
process's CPU over the run (utime + stime from /proc/<pid>/stat, in cores; again from the moment
every client had its stream, which leaves out the 200 requests' set-up; and per metric event
delivered to a client: the figure that a loaded machine changes least) and, on PostgreSQL,
the most connections open to wb_bench (pg_stat_activity, sampled every 0.1 s; of all processes:
web, worker and this script, whose sampling connection is left out), over the whole run and
after every client had its stream (the lookups of 200 requests at once open connections briefly).

The burst case is a web restart: the web server is started anew, a new 20-epoch job runs for a
second, then `--burst` clients
connect within `--burst-spread` seconds, each resuming from the same cursor (Last-Event-ID, as
every open page would), each with a session of its own (`--burst-auth token`: all with the API token). A point's latency is its receipt minus the later of its report and that
client's own connect, over each client's first `--burst-window` seconds (longer for a client
that has not yet had a point reported after it connected). `--tiny` runs a few clients on short
jobs in seconds, to show the benchmark still works (CI runs it; its figures mean nothing).
Exits non-zero when a case received no points.
"""
from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import live_latency as base  # noqa: E402  (its set-up: user, digits, worker, web, job)

from workbench.processes import free_port, stop  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


class ConnectionPeak(threading.Thread):
    """The most connections to the benchmark's database seen while it runs (PostgreSQL only)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.streaming, self.done = 0, 0, threading.Event()
        self.connected = threading.Event()  # every client has its stream: from here on, `streaming`

    def run(self) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            while not self.done.wait(0.1):
                cursor.execute("SELECT count(*) - 1 FROM pg_stat_activity WHERE datname = current_database()")
                count = cursor.fetchone()[0]
                self.peak = max(self.peak, count)
                if self.connected.is_set():
                    self.streaming = max(self.streaming, count)
        connection.close()


def client(port: int, pk: int, token: str, connected: threading.Barrier, out: list[tuple[float, float]]) -> None:
    """(report time, receipt time) for every metric event of one stream."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        conn.request("GET", f"/api/v1/jobs/{pk}/events/", headers={"Authorization": f"Token {token}"})
        response = conn.getresponse()
        connected.wait()
        event = ""
        while raw := response.readline():
            field, _, value = raw.decode().rstrip("\n").partition(": ")
            if field == "event":
                event = value
                if value == "end":
                    return
            elif field == "data" and event == "metric":
                out.append((json.loads(value)["time"], time.time()))
    finally:
        conn.close()


def run_count(count: int, port: int, web_pid: int, token: str, owner, dataset, epochs: int,  # type: ignore[no-untyped-def]
              postgres: bool) -> str:
    pk = base.create_job(owner, dataset, epochs)
    connected = threading.Barrier(count + 1)
    results: list[list[tuple[float, float]]] = [[] for _ in range(count)]
    threads = [threading.Thread(target=client, args=(port, pk, token, connected, results[i]), daemon=True)
               for i in range(count)]
    sampler = ConnectionPeak() if postgres else None
    if sampler:
        sampler.start()
    cpu_before, started = cpu_seconds(web_pid), time.monotonic()
    for thread in threads:
        thread.start()
    connected.wait(timeout=120)
    since, cpu_connected, streaming_from = time.time(), cpu_seconds(web_pid), time.monotonic()
    if sampler:
        sampler.connected.set()
    for thread in threads:
        thread.join()
    seconds, cpu = time.monotonic() - started, cpu_seconds(web_pid) - cpu_before
    streaming_cpu = (cpu_seconds(web_pid) - cpu_connected) / (time.monotonic() - streaming_from)
    if sampler:
        sampler.done.set()
        sampler.join()
    ms = [1000 * (got - sent) for points in results for sent, got in points if sent >= since]
    if not ms:
        return f"{count:>4} clients: no points after all were connected"
    return (f"{count:>4} clients: {sum(map(len, results)) // count} points each over {seconds:.1f} s; latency ms "
            f"p50 {statistics.median(ms):.0f}  p95 {base.percentile(ms, 95):.0f}  max {max(ms):.0f}; "
            f"web CPU {cpu / seconds:.2f} cores ({streaming_cpu:.2f} once all were connected), "
            f"{1e6 * cpu / max(sum(map(len, results)), 1):.0f} µs per event delivered"
            + (f"; PostgreSQL connections, most while connecting {sampler.peak}, "
                                                 f"while streaming {sampler.streaming}" if sampler else ""))


POINT_TIME = re.compile(rb'^data: \{"id":\d+,.*"time":([0-9.e+-]+)\}$', re.M)  # a metric event's data line


async def burst_client(port: int, path: str, headers: dict[str, str], at: float, window: float,
                       out: list[tuple[float, float, float]]) -> None:
    """At `at` (time.time()), reconnect as a browser does after a web restart (Last-Event-ID), read
    for `window` seconds, longer if no point reported after the connect has come yet (a client
    that waits longer than the window counts); (connect, report, receipt) of every metric event.
    One event loop for all clients, reading whole chunks and finding the points' times with one
    regular expression: parsed line by line in Python, 200 streams of 100 points a second took
    more than the benchmark's core, and its own lag showed as latency."""
    await asyncio.sleep(max(at - time.time(), 0.0))
    connect = time.time()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        # HTTP/1.0: the body comes as written, not in chunks whose sizes would cut the lines read here.
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{head}\r\n".encode())
        status = (await reader.readline()).decode()
        if " 200 " not in status:
            raise RuntimeError(f"the stream answered {status.strip()}")
        await reader.readuntil(b"\r\n\r\n")  # the response's headers
        rest, fresh = b"", False
        while time.time() - connect < window or not fresh:
            chunk = await reader.read(1 << 16)
            if not chunk:
                return
            got = time.time()
            whole, _, rest = (rest + chunk).rpartition(b"\n\n")  # events end with a blank line
            for match in POINT_TIME.finditer(whole):
                out.append((connect, reported := float(match[1]), got))
                fresh = fresh or reported >= connect
            if b"event: end\n" in whole:
                return
    finally:
        writer.close()


def sessions(owner, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    """Logged-in sessions of the owner, as `count` browsers would hold them after the login form."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    keys = []
    for _ in range(count):
        session = SessionStore()
        session[SESSION_KEY], session[HASH_SESSION_KEY] = str(owner.pk), owner.get_session_auth_hash()
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session.create()
        keys.append(session.session_key)
    return keys


def run_burst(count: int, port: int, web_pid: int, token: str, owner, dataset, epochs: int,  # type: ignore[no-untyped-def]
              spread: float, window: float, warm: float, auth: str) -> str:
    """`count` clients connecting within `spread` seconds to a job that has run for `warm` seconds,
    each resuming from the same cursor (the point every page had before the restart). A point's
    latency is its receipt minus the later of its report and the client's own connect."""
    from jobs.models import MetricPoint, TrainingJob

    credentials = ([{"Cookie": f"sessionid={key}"} for key in sessions(owner, count)] if auth == "session"
                   else [{"Authorization": f"Token {token}"}] * count)
    pk = base.create_job(owner, dataset, epochs)
    deadline = time.monotonic() + 120
    while not MetricPoint.objects.filter(job_id=pk).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(warm)
    cursor = MetricPoint.objects.filter(job_id=pk).order_by("-pk").values_list("pk", flat=True).first() or 0
    start = time.time() + 0.2
    results: list[list[tuple[float, float, float]]] = [[] for _ in range(count)]
    path, resume = f"/api/v1/jobs/{pk}/events/", {"Last-Event-ID": str(cursor)}

    async def clients() -> None:
        await asyncio.gather(*(burst_client(port, path, {**credentials[i], **resume}, start + spread * i / count,
                                            window, results[i]) for i in range(count)))

    cpu_before = cpu_seconds(web_pid)
    asyncio.run(clients())
    cpu = cpu_seconds(web_pid) - cpu_before
    running = TrainingJob.objects.get(pk=pk).status == TrainingJob.Status.RUNNING
    TrainingJob.objects.filter(pk=pk).update(abort_requested=True)  # the next case needs the worker
    ms = [1000 * (got - max(sent, connect)) for points in results for connect, sent, got in points]
    firsts = [1000 * (points[0][2] - points[0][0]) for points in results if points]
    if not ms:
        return f"burst of {count}: no points" + ("" if running else " (the job had ended)")
    return (f"burst of {count} ({auth}s) within {spread:g} s: latency ms over each client's first {window:g} s "
            f"p50 {statistics.median(ms):.0f}  p95 {base.percentile(ms, 95):.0f}  max {max(ms):.0f}; "
            f"first point after connect p50 {statistics.median(firsts):.0f}  p95 {base.percentile(firsts, 95):.0f} ms; "
            f"{len(firsts)}/{count} clients got points; web CPU {cpu:.2f} s"
            + ("" if running else "; THE JOB ENDED DURING THE BURST: use more --epochs"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("embedded", "redis"), default="embedded")
    parser.add_argument("--clients", default="1,50,200")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--burst", type=int, default=200, help="clients connecting at once (0: no burst case)")
    parser.add_argument("--burst-spread", type=float, default=1.0, help="seconds over which they connect")
    parser.add_argument("--burst-window", type=float, default=2.0, help="seconds each burst client reads")
    parser.add_argument("--burst-epochs", type=int, default=20)
    parser.add_argument("--burst-auth", choices=("session", "token"), default="session",
                        help="each burst client a session of its own (as browsers), or all one API token")
    parser.add_argument("--tiny", action="store_true", help="seconds: 2 clients, then a burst of 5")
    args = parser.parse_args()
    if args.tiny:
        args.backend, args.clients, args.epochs, args.burst, args.burst_epochs = "embedded", "2", 1, 5, 2
        args.burst_spread, args.burst_window = 0.2, 0.5
    args.threads, args.redis_database = 1, "postgres"
    procs, lines = [], []
    with tempfile.TemporaryDirectory(prefix="wb-bench-fanout-") as data_dir:
        env = base.environment(args.backend, data_dir, args)
        base.reset_services(args.backend, args)
        os.environ.update(env)
        for key in ("DATABASE_URL", "CELERY_BROKER_URL"):
            if key not in env:
                os.environ.pop(key, None)
        try:
            import django

            django.setup()
            from django.core.management import call_command

            call_command("migrate", verbosity=0)
            token, owner = base.make_user()
            dataset = base.ingest_digits(owner, Path(data_dir))
            port = free_port()
            procs.append(base.start_worker(env, Path(data_dir)))
            procs.append(web := base.start_web(env, Path(data_dir), port))
            for count in (int(c) for c in args.clients.split(",") if c):
                lines.append(run_count(count, port, web.pid, token, owner, dataset, args.epochs,
                                       args.backend == "redis"))
                print(f"[{args.backend}]", lines[-1], flush=True)
            if args.burst:  # a web restart: a new process, every page reconnecting at once
                stop(procs.pop())
                procs.append(web := base.start_web(env, Path(data_dir), port := free_port()))
                lines.append(run_burst(args.burst, port, web.pid, token, owner, dataset, args.burst_epochs,
                                       args.burst_spread, args.burst_window, warm=0.2 if args.tiny else 1.0,
                                       auth=args.burst_auth))
                print(f"[{args.backend}]", lines[-1], flush=True)
        finally:
            for proc in procs:
                stop(proc)
            from django.db import connections

            connections.close_all()
    if any("no points" in line for line in lines):
        sys.exit("a case received no points")


if __name__ == "__main__":
    main()
