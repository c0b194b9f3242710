"""Recovery benchmark: SIGKILL the worker at random moments of training jobs and time the way back.

    .venv/bin/python bench/recovery.py [--kills 20] [--epochs 8] [--batch-size 16] [--seed 0] [--settle 0] [--tiny]

In one temporary data folder on the embedded default (SQLite + the filesystem broker): migrate (a
`manage.py migrate` subprocess), a user, then `manage.py serve` as a subprocess (PORT a free port,
WORKER_CONCURRENCY=1, WORKBENCH_TORCH_THREADS=1, its output in serve.log in the data folder), and the
example digits ingested by serve's worker. One uninterrupted job first, as a warm-up and to show how
long a job runs. Then, one job at a time, --kills times: a LeNet job on the digits; once it has
reported a train loss at a random step between 5% and 80% of its total steps, SIGKILL serve's
worker child (found afresh in /proc each time: its pid changes with every restart). Serve starts it
again under the same name, the worker takes the job back at start and queues it again, and the job
resumes from its last snapshot. Polling the database every 20 ms, per kill:
  kill -> new attempt   until the job's row shows the next attempt (attempt + 1, no longer queued)
  kill -> training      until the first metric point of the resumed attempt (a point of that job
                        whose `time` is after the kill): its `time` (when the worker reported it) minus
                        the kill time, and also when this process saw it in the database
  extra epochs redone   (highest train-loss step in the database at the kill - step of the snapshot
                        it resumed from) / steps per epoch
and whether the job then ended `done` by itself (no request from anyone) within 120 s of the kill.
Serve waits 1 s before it starts a dead child again, doubling (up to 30 s) while the child keeps
dying within serve's STEADY seconds of its start: kills soon after a restart meet ever longer
waits. Each kill line shows the killed worker's uptime and the wait serve announced, and kill ->
training is also given less that wait (the recovery path itself). --settle S waits, before each
job, until the worker has been up S seconds (S above STEADY: every restart is the short one).
Prints one line per kill, then medians, worst cases and the targets: every job finished, and median
and worst kill -> training under 10 s. Misses are printed; the exit status is 0 either way (the
figures are the result; a crash of this script itself still exits non-zero).
--tiny: no warm-up job, one kill of a 2-epoch job at batch 64: a check that the benchmark still
works (tests/bench), not a figure.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from workbench.processes import free_port, listening  # noqa: E402

POLL = 0.02  # seconds between database polls while timing a recovery
JOB_TIMEOUT = 120.0  # seconds after a kill for the job to end; later counts as not finished
TARGET_SECONDS = 10.0  # kill -> training again, median and worst, when the same worker comes back
KILL_WINDOW = (0.05, 0.80)  # the kill comes at a random step in this fraction of the job's steps


@dataclass
class Kill:
    """What one kill did to one job."""

    job: int
    pid: int  # the worker process killed
    target_step: int  # the step the kill waited for
    killed_at_step: int  # the highest train-loss step in the database at the kill
    resumed_step: int | None = None  # the step of the snapshot the next attempt resumed from (0: the start)
    uptime: float | None = None  # how long the killed worker process had run (serve's backoff depends on it)
    backoff: float | None = None  # serve's announced wait before starting the worker again
    to_attempt: float | None = None  # kill -> the row shows the next attempt
    to_training: float | None = None  # kill -> the first point's own report time
    to_training_seen: float | None = None  # kill -> this process saw that point in the database
    status: str = ""
    attempts: int = 0
    seconds: float = 0.0  # kill -> the job ended (or the timeout)

    def extra_epochs(self, steps_per_epoch: int) -> float | None:
        if self.resumed_step is None:
            return None
        return (self.killed_at_step - self.resumed_step) / steps_per_epoch


# --- set-up: data folder, database, serve, user, dataset --------------------------------------

def environment(data_dir: str, port: int) -> dict[str, str]:
    """The environment for serve, migrate and this process: the embedded default, nothing external."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL",
                                                            "WORKBENCH_LIVE_REDIS_URL")}
    env.update(DJANGO_SETTINGS_MODULE="workbench.settings", WORKBENCH_DATA_DIR=data_dir, PYTHONUNBUFFERED="1",
               PORT=str(port), WORKER_CONCURRENCY="1", WORKBENCH_TORCH_THREADS="1", LOG_LEVEL="WARNING")
    return env


def migrate(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "--verbosity", "0"], cwd=ROOT, env=env,
                   check=True)


def setup_django(env: dict[str, str]) -> None:
    # Settings are read once, at setup: the same variables as serve's, before it.
    os.environ.update(env)
    for key in ("DATABASE_URL", "CELERY_BROKER_URL", "WORKBENCH_LIVE_REDIS_URL"):
        os.environ.pop(key, None)
    import django

    django.setup()


def start_serve(env: dict[str, str], log: Path, port: int, timeout: float = 90) -> subprocess.Popen[bytes]:
    """`manage.py serve`, waited for until the web answers and the worker says it is ready."""
    with log.open("wb") as handle:
        serve = subprocess.Popen([sys.executable, "manage.py", "serve"], cwd=ROOT, env=env, stdout=handle,
                                 stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if serve.poll() is not None:
            raise RuntimeError(f"serve exited at start:\n{log.read_text(errors='replace')[-3000:]}")
        # The worker's output goes to serve's, so its "ready." line lands in the same log.
        if listening(port) and "ready." in log.read_text(errors="replace"):
            return serve
        time.sleep(0.2)
    stop_serve(serve)
    raise RuntimeError(f"serve did not start in {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")


def stop_serve(serve: subprocess.Popen[bytes], timeout: float = 30) -> int | None:
    """SIGTERM (serve stops both children), then SIGKILL if it hangs; its exit status."""
    if serve.poll() is None:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"serve did not stop in {timeout:.0f} s after SIGTERM; killed", flush=True)
            serve.kill()
            serve.wait()
    return serve.returncode


def make_owner():  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("bench", password="bench-password")


def ingest_digits(owner, timeout: float = 180):  # type: ignore[no-untyped-def]
    """The example digits through the product's own path: serve's worker ingests them."""
    from datasets.models import Dataset
    from datasets.services import dataset_create_example

    pk = dataset_create_example(owner=owner).pk
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dataset = Dataset.objects.get(pk=pk)
        if dataset.is_finished:
            if dataset.status != Dataset.Status.READY:
                raise RuntimeError(f"the digits did not ingest: {dataset.status} {getattr(dataset, 'error', '')}")
            return dataset
        time.sleep(0.2)
    raise RuntimeError(f"the digits were not ingested in {timeout:.0f} s")


# --- processes in /proc -----------------------------------------------------------------------

def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for serve to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def uptime(pid: int) -> float:
    """Seconds since the process started (/proc/<pid>/stat's start time against /proc/uptime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of stat; 20th after the name
    return float(Path("/proc/uptime").read_text().split()[0]) - started


def worker_pid(serve: subprocess.Popen[bytes]) -> int | None:
    """Serve's worker child as it is now: the child running celery (the other one is uvicorn)."""
    for pid in children(serve.pid):
        if "celery" in cmdline(pid) and alive(pid):
            return pid
    return None


# --- one job, one kill ------------------------------------------------------------------------

def create_job(owner, dataset, args: argparse.Namespace, name: str):  # type: ignore[no-untyped-def]
    from jobs.services import JobSettings, job_create

    return job_create(owner=owner, dataset=dataset, network="lenet",
                      options=JobSettings(name=name, epochs=args.epochs, batch_size=args.batch_size, device="cpu",
                                          seed=args.seed))


def top_train_step(job_id: int) -> int:
    from django.db.models import Max

    from jobs.models import MetricPoint

    top = MetricPoint.objects.filter(job_id=job_id, split="train", name="loss").aggregate(top=Max("step"))["top"]
    return int(top or 0)


def wait_for_step(job_id: int, step: int, serve: subprocess.Popen[bytes], timeout: float = 120) -> None:
    from jobs.models import TrainingJob

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if top_train_step(job_id) >= step:
            return
        status = TrainingJob.objects.filter(pk=job_id).values_list("status", flat=True).get()
        if status not in TrainingJob.ACTIVE:
            raise RuntimeError(f"job {job_id} ended {status} before step {step}")
        if serve.poll() is not None:
            raise RuntimeError(f"serve exited ({serve.returncode}) while job {job_id} trained")
        time.sleep(POLL)
    raise RuntimeError(f"job {job_id} did not reach step {step} in {timeout:.0f} s")


def wait_for_worker(serve: subprocess.Popen[bytes], timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = worker_pid(serve)
        if pid is not None:
            return pid
        time.sleep(POLL)
    raise RuntimeError(f"serve has no live worker child after {timeout:.0f} s")


def kill_worker(pid: int) -> float:
    """SIGKILL, as a crash or the OOM killer would; returns the kill's wall-clock time."""
    os.kill(pid, signal.SIGKILL)
    # Taken after the kill: every point the dead process reported carries an earlier time.
    killed = time.time()
    while alive(pid):  # gone in microseconds; waited for so the database reads below see all it wrote
        time.sleep(0.001)
    return killed


def announced_backoff(log: Path, pid: int) -> float | None:
    """Serve's "worker (pid N) stopped ...; starting it again in X s" for this pid, if written yet."""
    match = re.search(rf"worker \(pid {pid}\) stopped \([^)]*\); starting it again in ([0-9.]+) s",
                      log.read_text(errors="replace"))
    return float(match.group(1)) if match else None


def snapshot_step(job: Any) -> int:
    """The step of the snapshot the new attempt resumes from; 0 when it starts over."""
    from jobs.models import Snapshot

    if job.resume_from_epoch is None:
        return 0
    snapshot = Snapshot.objects.filter(job_id=job.pk, epoch=job.resume_from_epoch).first()
    return int(snapshot.step or 0) if snapshot is not None else 0


def watch_recovery(kill: Kill, killed: float, attempt: int, log: Path) -> None:
    """Poll until the job has ended (or the timeout), noting when each sign of recovery shows."""
    from jobs.models import MetricPoint, TrainingJob

    deadline = killed + JOB_TIMEOUT
    while True:
        now = time.time()
        job = TrainingJob.objects.get(pk=kill.job)
        if kill.to_attempt is None and job.attempt > attempt and job.status != TrainingJob.Status.QUEUED:
            kill.to_attempt = now - killed
            # Read now: the take-back set resume_from_epoch; the snapshot row stays.
            kill.resumed_step = snapshot_step(job)
        if kill.to_training is None:
            first = (MetricPoint.objects.filter(job_id=kill.job, time__gt=killed).order_by("time")
                     .values_list("time", flat=True).first())
            if first is not None:
                kill.to_training, kill.to_training_seen = first - killed, now - killed
        if kill.backoff is None:
            kill.backoff = announced_backoff(log, kill.pid)
        if job.status not in TrainingJob.ACTIVE or now > deadline:
            kill.status = job.status if job.status not in TrainingJob.ACTIVE else f"{job.status} (timed out)"
            kill.attempts, kill.seconds = job.attempt, now - killed
            if kill.resumed_step is None and job.attempt > attempt:
                kill.resumed_step = snapshot_step(job)
            return
        time.sleep(POLL)


def settle(serve: subprocess.Popen[bytes], seconds: float) -> None:
    """Wait until the worker has been up `seconds`: past serve's STEADY, its next restart is the 1 s one."""
    while seconds > 0:
        left = seconds - uptime(wait_for_worker(serve))
        if left <= 0:
            return
        time.sleep(min(left, 1.0))


def one_kill(owner, dataset, serve: subprocess.Popen[bytes], log: Path, args: argparse.Namespace,  # type: ignore[no-untyped-def]
             rng: random.Random, total: int, index: int) -> Kill:
    settle(serve, args.settle)
    job = create_job(owner, dataset, args, f"recovery bench {index}")
    low, high = max(1, math.ceil(KILL_WINDOW[0] * total)), max(1, math.floor(KILL_WINDOW[1] * total))
    target = rng.randint(low, high)
    try:
        wait_for_step(job.pk, target, serve)
        # Found afresh: the previous kill's worker was replaced by a new process.
        pid = wait_for_worker(serve)
    except RuntimeError as exc:  # no kill this time: counted as a job that did not finish by itself
        return Kill(job=job.pk, pid=0, target_step=target, killed_at_step=top_train_step(job.pk),
                    status=f"not killed ({exc})")
    from jobs.models import TrainingJob

    attempt = TrainingJob.objects.filter(pk=job.pk).values_list("attempt", flat=True).get()
    up = uptime(pid)
    killed = kill_worker(pid)
    # Before the new attempt rewinds: it deletes the points after its snapshot.
    kill = Kill(job=job.pk, pid=pid, target_step=target, killed_at_step=top_train_step(job.pk), uptime=up)
    watch_recovery(kill, killed, attempt, log)
    return kill


def baseline(owner, dataset, serve: subprocess.Popen[bytes], args: argparse.Namespace) -> tuple[str, float]:  # type: ignore[no-untyped-def]
    """One job left alone: a warm-up for the worker, and how long a job runs uninterrupted."""
    from jobs.models import TrainingJob

    job = create_job(owner, dataset, args, "recovery bench baseline")
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline and serve.poll() is None:
        job.refresh_from_db()
        if job.status not in TrainingJob.ACTIVE:
            break
        time.sleep(0.1)
    seconds = (job.finished_at - job.started_at).total_seconds() if job.finished_at and job.started_at else math.nan
    return job.status, seconds


# --- the report -------------------------------------------------------------------------------

def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def print_kill(i: int, kill: Kill, steps_per_epoch: int) -> None:
    print(f"kill {i:2d}: job {kill.job} worker pid {kill.pid} (up {fmt(kill.uptime, '.1f')} s) at step "
          f"{kill.killed_at_step} (target {kill.target_step}); serve waits {fmt(kill.backoff, 'g')} s; resumed from step "
          f"{fmt(kill.resumed_step, 'd')}; new attempt {fmt(kill.to_attempt)} s, training {fmt(kill.to_training)} s "
          f"(seen {fmt(kill.to_training_seen)} s); redone {fmt(kill.extra_epochs(steps_per_epoch))} epochs; "
          f"{kill.status} after {kill.attempts} attempts, {kill.seconds:.1f} s after the kill", flush=True)


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):6.2f}   worst {max(values):6.2f}" if values else "no values"


def report(kills: list[Kill], steps_per_epoch: int) -> None:
    n = len(kills)
    finished = sum(k.status == "done" for k in kills)
    training = [k.to_training for k in kills if k.to_training is not None]
    seen = [k.to_training_seen for k in kills if k.to_training_seen is not None]
    attempts = [k.to_attempt for k in kills if k.to_attempt is not None]
    extra = [e for k in kills if (e := k.extra_epochs(steps_per_epoch)) is not None]
    print(f"\nover {n} kills")
    print(f"  jobs finished by themselves (done)   {finished}/{n}")
    print(f"  kill -> training again (s)           {spread(training)}   ({len(training)}/{n} measured)")
    print(f"    ... as seen in the database (s)    {spread(seen)}")
    net = [k.to_training - k.backoff for k in kills if k.to_training is not None and k.backoff is not None]
    print(f"    ... less serve's restart wait (s)  {spread(net)}")
    print(f"  kill -> new attempt on the row (s)   {spread(attempts)}   ({len(attempts)}/{n} measured)")
    print(f"  extra epochs redone per kill         {spread(extra)}   total {sum(extra):.2f}")
    backoffs = sorted({k.backoff for k in kills if k.backoff is not None})
    print(f"  serve's announced restart waits (s)  {', '.join(f'{b:g}' for b in backoffs) or '-'}")
    print(f"\ntargets: jobs finished {n}/{n}; median and worst kill -> training under {TARGET_SECONDS:g} s")
    missed = []
    if finished < n:
        missed.append(f"only {finished}/{n} jobs finished by themselves "
                      f"({', '.join(f'job {k.job}: {k.status}' for k in kills if k.status != 'done')})")
    if len(training) < n:
        missed.append(f"{n - len(training)} kills never trained again")
    if training and statistics.median(training) >= TARGET_SECONDS:
        missed.append(f"median kill -> training {statistics.median(training):.2f} s")
    if training and max(training) >= TARGET_SECONDS:
        missed.append(f"worst kill -> training {max(training):.2f} s")
    print("TARGET MISSED: " + "; ".join(missed) if missed else "all targets met")


# --- main -------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="for the kill moments and the jobs")
    parser.add_argument("--settle", type=float, default=0.0,
                        help="before each job, wait until the worker has been up this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the data folder (its path is printed)")
    parser.add_argument("--tiny", action="store_true", help="seconds, not a figure: a check that it still runs")
    args = parser.parse_args()
    if args.tiny:
        args.kills, args.epochs, args.batch_size = 1, 2, 64
    data_dir = tempfile.mkdtemp(prefix="wb-bench-recovery-")
    try:
        run(args, Path(data_dir))
    finally:
        from django.db import connections

        connections.close_all()
        if args.keep:
            print(f"data folder kept: {data_dir}")
        else:
            import shutil

            shutil.rmtree(data_dir, ignore_errors=True)


def run(args: argparse.Namespace, data_dir: Path) -> None:
    port = free_port()
    env = environment(str(data_dir), port)
    migrate(env)
    setup_django(env)
    owner = make_owner()
    log = data_dir / "serve.log"
    serve = start_serve(env, log, port)
    kills: list[Kill] = []
    try:
        dataset = ingest_digits(owner)
        steps_per_epoch = math.ceil(dataset.split_counts["train"] / args.batch_size)
        total = args.epochs * steps_per_epoch
        # The uninterrupted warm-up job is left out of --tiny: the kill's own job is the check.
        status, seconds = baseline(owner, dataset, serve, args) if not args.tiny else ("skipped (--tiny)", 0.0)
        print(f"LeNet on the digits ({dataset.split_counts['train']} train images): {args.epochs} epochs, batch "
              f"{args.batch_size}, {steps_per_epoch} steps per epoch, {total} steps; snapshot every epoch. "
              f"Uninterrupted: {status} in {seconds:.1f} s. Worker: concurrency 1, 1 torch thread.", flush=True)
        rng = random.Random(args.seed)
        for i in range(1, args.kills + 1):
            if serve.poll() is not None:
                print(f"serve exited ({serve.returncode}); stopping after {len(kills)} kills", flush=True)
                break
            kills.append(one_kill(owner, dataset, serve, log, args, rng, total, i))
            print_kill(i, kills[-1], steps_per_epoch)
    finally:
        code = stop_serve(serve)
        print(f"serve stopped (exit status {code})" + (f"; its log: {log}" if args.keep else ""), flush=True)
    if kills:
        report(kills, steps_per_epoch)


if __name__ == "__main__":
    main()
