"""The reporter a backend trains with: metric points, progress, log lines, heartbeat and the abort flag.

The training loop only puts events on a queue; one writer thread does all database work, so a
slow database never slows training. The heartbeat has a thread of its own (workbench.leases), so it
goes on while a long step runs and while the writer retries. The job's log is rows in the database
too (jobs.models.LogLine), not a file in its folder: a web on another host reads it.
"""
from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from jobs import hooks
from jobs.models import LogLine, MetricPoint, Snapshot, TrainingJob
from jobs.uploads import SnapshotUploads
from live import wakeup
from training.contract import TrainingFailed
from training.vision_tasks import VISION_TASKS
from workbench.leases import Lease
from workers import probe

log = logging.getLogger(__name__)

_STOP = object()
_ROW_EVERY = 0.25
# Writes are at least this far apart. Each one is ~1.5 ms of ORM work holding the GIL; writing
# after every report took ~30% of a core from a fast training loop. Points wait at most this long.
_WRITE_EVERY = 0.1


@dataclass(frozen=True)
class MetricEvent:
    split: str
    name: str
    value: float
    epoch: float
    step: int
    time: float


@dataclass(frozen=True)
class ProgressEvent:
    epoch: float
    step: int
    total_steps: int
    time: float


@dataclass(frozen=True)
class LogEvent:
    text: str
    time: float
    fenced: bool = True  # False: a run's word on losing its job, written though the run holds it no more


_POINT_FIELDS = ("job", "split", "name", "epoch", "step", "value", "time")
_LINE_FIELDS = ("job", "at", "text")
_SNAPSHOT_FIELDS = ("job", "epoch", "step", "path", "created_at")
_INSERT_ROWS = 1000  # 7 parameters a row: well under SQLite's and PostgreSQL's limits


def best_mode(key: str) -> str | None:
    """Whether a higher ("max") or lower ("min") value of `key` is better, as its vision task
    says (val_loss and each task's val_<metric>); None for keys with no best (train loss, lr)."""
    return next((mode for task in VISION_TASKS.values() if (mode := task.best_mode(key))), None)


class Summary:
    """`latest` and `best` of a job, from its points in order: the reporter's and a rewind's one rule."""

    def __init__(self, latest: dict[str, Any] | None = None, best: dict[str, Any] | None = None) -> None:
        self.latest: dict[str, Any] = dict(latest or {})
        self.best: dict[str, Any] = dict(best or {})

    @classmethod
    def of_points(cls, points: Iterable[MetricPoint]) -> Summary:
        summary = cls()
        for point in points:
            summary.track(point.split, point.name, point.value, point.epoch)
        return summary

    def track(self, split: str, name: str, value: float, epoch: float) -> None:
        if split == "system":  # the worker's CPU and memory: curves, not results
            return
        key = "lr" if name == "lr" else f"{split}_{name}"
        finite = value if math.isfinite(value) else None
        self.latest[key] = finite
        self.latest["epoch"] = epoch
        mode = best_mode(key)
        if finite is None or mode is None:
            return
        previous = self.best.get(key)
        if previous is None or (finite > previous if mode == "max" else finite < previous):
            self.best[key] = finite
            self.best[f"{key}_epoch"] = epoch


class DatabaseReporter:
    """Stores a run's reports through its lease, so a run that lost its row writes nothing.

    A database that refuses the writes does not lose them: the writer keeps them and retries with
    backoff, and the training thread waits at its next step (the heartbeat thread goes on beating
    and watching the abort flag). After WORKBENCH_REPORT_RETRY_SECONDS the run fails, saying why.

    Log lines take the same path, in the order they were logged, before the points of the same
    write (a line saying the points cannot be stored goes out while they cannot). A line logged
    before `start` waits for the writer; one logged once the writer has ended (after `close`, or
    after the run lost its job or gave up) is written at once by the caller.
    """

    def __init__(self, lease: Lease, *, latest: dict[str, Any] | None = None,
                 best: dict[str, Any] | None = None, retry_seconds: float | None = None) -> None:
        self.lease = lease
        self.job_id = lease.pk
        self.retry_seconds = retry_seconds if retry_seconds is not None else settings.WORKBENCH_REPORT_RETRY_SECONDS
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._closing = threading.Event()
        self._healthy = threading.Event()
        self._healthy.set()
        self.failure = ""
        self.upload_failure = ""  # a snapshot that could not be put into the store (jobs.uploads)
        self.stop_reason = ""  # why a validation callback stopped the run (jobs.hooks); "" for none
        self._thread = threading.Thread(target=self._run, name=f"reporter-{self.job_id}", daemon=True)
        self._lines: list[LogEvent] = []  # taken off the queue, not stored yet
        self._lines_lock = threading.Lock()  # the writer's last flush and a late log() may overlap
        self._ended = threading.Event()  # the writer is gone: log() writes its line itself
        self._lines_stored = 0
        self.summary = Summary(latest, best)
        self._progress: ProgressEvent | None = None
        self._device: str | None = None
        self._first: ProgressEvent | None = None
        self._sampler = probe.ProcessSampler()
        self._processes: tuple[int, ...] = ()
        # Snapshots reach the writer only once they are whole in the store (jobs.uploads).
        self._uploads = SnapshotUploads(TrainingJob(pk=lease.pk).folder, self._queue.put, said=self.log, failed=self._upload_failed,
                                        lost=lease.lost)

    @property
    def latest(self) -> dict[str, Any]:
        return self.summary.latest

    @property
    def best(self) -> dict[str, Any]:
        return self.summary.best

    # --- the training thread's side: cheap, never blocks -------------------------------------
    def metric(self, *, split: str, name: str, value: float, epoch: float, step: int) -> None:
        self._queue.put(MetricEvent(split, name, float(value), float(epoch), int(step), time.time()))

    def progress(self, *, epoch: float, step: int, total_steps: int) -> None:
        self._queue.put(ProgressEvent(float(epoch), int(step), int(total_steps), time.monotonic()))

    def snapshot(self, *, epoch: float, path: str, step: int | None = None) -> None:
        self._uploads.put(("snapshot", float(epoch), path, step))

    def log(self, message: str, *, fenced: bool = True) -> None:
        """`fenced=False` only for the run's word on losing its job: the one line a lost run writes."""
        self._queue.put(LogEvent(message, time.time(), fenced))
        if self._ended.is_set():
            self._write_late()

    def using_device(self, name: str, processes: tuple[int, ...] = ()) -> None:
        self._device = name  # written with the next row update, by the writer thread
        self._processes = tuple(processes)

    def should_stop(self) -> bool:
        """True once abort is asked. Waits while reports cannot be stored; raises TrainingFailed when
        they could not be for too long, LeaseLost when this run no longer holds its job."""
        while not self._healthy.wait(0.5) and not self.lease.stop.is_set():
            self.lease.check()
        if self.failure:
            raise TrainingFailed(self.failure)
        self.lease.check()
        return self.lease.stop.is_set()

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._uploads.start()
        self._thread.start()

    def close(self) -> None:
        self._uploads.close()  # the last snapshots are in the store before the last reports go out
        self._queue.put(_STOP)
        self._closing.set()  # the last points go out now, not after the write interval
        if self._thread.ident is None:  # never started: nothing was trained, but what it logged is written
            self._ended.set()
            self._write_late()
            return
        self._thread.join(timeout=self.retry_seconds + 30)

    def _upload_failed(self, message: str) -> None:
        self.log(message)
        self.upload_failure = message  # the job ends in error even when training ended meanwhile
        self.failure = message  # the training thread raises it at its next step

    # --- the writer thread ----------------------------------------------------------------------
    def _run(self) -> None:
        last_row = last_write = 0.0
        points: list[MetricEvent] = []
        snapshots: list[tuple[Any, ...]] = []
        done = False
        try:
            while not self.lease.lost.is_set() and not self.failure:
                self._closing.wait(max(last_write + _WRITE_EVERY - time.monotonic(), 0.0))
                events = self._drain()
                done = done or _STOP in events
                points += [e for e in events if isinstance(e, MetricEvent)]
                snapshots += [e for e in events if isinstance(e, tuple)]
                self._lines += [e for e in events if isinstance(e, LogEvent)]
                for event in events:
                    if isinstance(event, ProgressEvent):
                        self._first = self._first or event
                        self._progress = event
                points += self._system_points(last=done)
                now = time.monotonic()
                row_due = done or now - last_row >= _ROW_EVERY or bool(snapshots)
                stored = self._lines_stored
                written = self._write_or_retry(points, snapshots, row_due)
                if self._lines_stored > stored or (written and (points or snapshots or row_due)):
                    wakeup.notify(self.job_id)
                    last_write = now
                if not written:
                    continue
                last_row = now if row_due else last_row
                points, snapshots = [], []
                if done:
                    return
        finally:
            self._healthy.set()  # never leave the training thread waiting
            self._ended.set()
            self._write_late()  # lines logged meanwhile: the last ones, or a lost run's word on its loss
            connection.close()

    def _system_points(self, last: bool = False) -> list[MetricEvent]:
        """Every WORKBENCH_SYSTEM_METRICS_SECONDS, the worker's CPU, memory and GPU as `system` points
        at the current step (a second sample at the same step is dropped, like any repeated point);
        and once more as the run ends, so that even a short run's chart spans it."""
        now = time.monotonic()
        if self._progress is None or (now < self._system_due and not last):
            return []
        self._system_due = now + settings.WORKBENCH_SYSTEM_METRICS_SECONDS
        try:
            values = self._sampler.sample(self._device, self._processes)
        except Exception:  # a reading is never worth a failed run
            log.warning("could not read the system metrics of job %s", self.job_id, exc_info=True)
            return []
        p, stamp = self._progress, time.time()
        return [MetricEvent("system", name, float(value), p.epoch, p.step, stamp) for name, value in values.items()]

    _system_due = 0.0

    def _write_or_retry(self, points: list[MetricEvent], snapshots: list[tuple[Any, ...]], row: bool) -> bool:
        """Write; on a database error keep everything for the next try, pause training, back off.

        The connection is kept from one write to the next: opening one per write (what
        close_old_connections does with CONN_MAX_AGE 0) was a sixth of this thread's CPU. One that
        the database dropped meanwhile (a restart) fails once and is replaced at once."""
        try:
            try:
                self._write(points, snapshots, row)
            except Exception:
                _close_connection()
                self._write(points, snapshots, row)  # every write is idempotent: the same again
        except Exception as exc:
            _close_connection()  # the next try starts on a fresh connection
            return self._failed_write(exc)
        if not self._healthy.is_set():
            self.log("Reports are stored again; training goes on.")
            self._failing_since = None
            self._healthy.set()
        return True

    def _write(self, points: list[MetricEvent], snapshots: list[tuple[Any, ...]], row: bool) -> None:
        self._write_lines()
        self._write_points(points)
        recorded = self._write_snapshots(snapshots)
        if row:
            # Progress made (a snapshot recorded): a later loss of the worker starts the count of
            # attempts in a row anew. Said in the row's own update, not in one more query.
            self._write_row(**({"retries": 0} if recorded else {}))

    _failing_since: float | None = None

    def _failed_write(self, exc: Exception) -> bool:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
            log.exception("reporter for job %s cannot write; training pauses and retries", self.job_id)
            self.log(f"Cannot store reports ({type(exc).__name__}: {exc}); training pauses and retries for up to "
                     f"{self.retry_seconds:g} s.")
        self._healthy.clear()
        failing = now - self._failing_since
        if failing >= self.retry_seconds:
            self.failure = (f"Training stopped: its reports could not be stored for {failing:.0f} s "
                            f"({type(exc).__name__}: {exc}). Check the database, then resume the job.")
            return False  # the run still holds its job: job_train ends it in error with this message
        time.sleep(min(0.5 * 2 ** int(failing), 5.0, max(self.retry_seconds - failing, 0.05)))
        return False

    def _drain(self) -> list[object]:
        try:
            events = [self._queue.get(timeout=0.1)]
        except queue.Empty:
            return []
        return events + self._drain_now()

    def _drain_now(self) -> list[object]:
        events: list[object] = []
        while True:
            try:
                events.append(self._queue.get_nowait())
            except queue.Empty:
                return events

    def _write_lines(self) -> None:
        """The pending lines in order, fenced like the points (Lease.insert), a thousand a statement;
        each is taken off the list once stored, so a retry stores none twice. A run that lost its job
        stores only its unfenced lines, and no line of a job that was deleted."""
        while self._lines:
            chunk = self._lines[:_INSERT_ROWS]
            if self.lease.lost.is_set() or not self.lease.insert(LogLine, _LINE_FIELDS, self._line_rows(chunk)):
                unfenced = [line for line in self._lines if not line.fenced]
                if unfenced and self.lease.model.objects.filter(pk=self.job_id).exists():
                    LogLine.objects.bulk_create([LogLine(job_id=self.job_id, at=_at(line.time), text=line.text)
                                                 for line in unfenced])
                    self._lines_stored += len(unfenced)
                self._lines = []
                return
            del self._lines[:len(chunk)]
            self._lines_stored += len(chunk)

    def _line_rows(self, lines: list[LogEvent]) -> list[tuple[Any, ...]]:
        adapt = connection.ops.adapt_datetimefield_value  # a raw statement: as the ORM stores it
        return [(self.job_id, adapt(_at(line.time)), line.text) for line in lines]

    def _write_late(self) -> None:
        """Store the lines queued now, on the caller's thread: the writer has ended. A database error
        is logged and the lines wait for the next call; points after the end are dropped, as ever."""
        with self._lines_lock:
            self._lines += [e for e in self._drain_now() if isinstance(e, LogEvent)]
            stored = self._lines_stored
            try:
                self._write_lines()
            except Exception:
                log.exception("could not store the last log lines of job %s", self.job_id)
                _close_connection()
            if self._lines_stored > stored:
                wakeup.notify(self.job_id)

    def _write_points(self, points: list[MetricEvent]) -> None:
        """One fenced INSERT per thousand points (Lease.insert). Not bulk_create: building model
        instances and compiling the query took 1.25 ms of GIL-held time per 50 points against
        0.28 ms for a plain statement, and the training thread may wait for every such millisecond."""
        for start in range(0, len(points), _INSERT_ROWS):
            rows = [(self.job_id, p.split, p.name, p.epoch, p.step, p.value, p.time)
                    for p in points[start:start + _INSERT_ROWS]]
            if not self.lease.insert(MetricPoint, _POINT_FIELDS, rows):
                return
        for point in points:
            self.summary.track(point.split, point.name, point.value, point.epoch)
        self._validated(points)

    def _validated(self, points: list[MetricEvent]) -> None:
        """Tell jobs.hooks of each stored validation; a stop reason answered stops the run like an
        abort (the loop checks should_stop), and the job then ends as `stopped` with that reason."""
        steps: dict[int, tuple[float, dict[str, float]]] = {}
        for p in points:
            if p.split == "val":
                steps.setdefault(p.step, (p.epoch, {}))[1][f"val_{p.name}"] = p.value
        for epoch, metrics in steps.values():
            reason = "" if self.stop_reason else hooks.validated(self.job_id, epoch, metrics)
            if reason:
                self.log(f"Stopped at epoch {epoch:g}: {reason.replace('_', ' ')}.")
                self.stop_reason = reason
                self.lease.stop.set()

    def _write_snapshots(self, snapshots: list[tuple[Any, ...]]) -> bool:
        """Record the snapshots (all their files are whole by now); True when there were some."""
        if not snapshots:
            return False
        now = connection.ops.adapt_datetimefield_value(timezone.now())  # a raw statement: as the ORM stores it
        # A snapshot already recorded (a resumed run) is left as it is.
        rows = [(self.job_id, epoch, step, path, now) for _, epoch, path, step in snapshots]
        return self.lease.insert(Snapshot, _SNAPSHOT_FIELDS, rows)

    def _write_row(self, **extra: Any) -> None:
        fields: dict[str, Any] = {"heartbeat_at": timezone.now(), "latest": self.latest, "best": self.best, **extra}
        if self._device is not None:
            fields["device_used"] = self._device
        p = self._progress
        if p is not None:
            fields.update(epoch=p.epoch, progress=min(p.step / max(p.total_steps, 1), 1.0),
                          eta_seconds=self._eta(p))
        # One query writes the row and reads the abort flag: no row updated means abort was asked
        # (or this attempt lost the job, which the fenced write below tells).
        if not self.lease.rows().filter(abort_requested=False).update(**fields) and self.lease.update(**fields):
            self.lease.stop.set()

    def _eta(self, p: ProgressEvent) -> float | None:
        first = self._first
        if first is None or p.step <= first.step:
            return None
        rate = (p.time - first.time) / (p.step - first.step)
        return max(rate * (p.total_steps - p.step), 0.0)


def _at(stamp: float) -> datetime:
    return datetime.fromtimestamp(stamp, tz=UTC)


def _close_connection() -> None:
    with contextlib.suppress(Exception):  # a broken connection may fail to close: it is dropped anyway
        connection.close()
