"""Who runs a piece of background work, on which attempt, and whether they are still there.

Every kind of background work (a training job, a dataset ingest, each kind of result) is a row
with a status. A worker claims a queued row with one conditional UPDATE that also counts the
attempt and names the worker process as its owner. While it works, a heartbeat thread refreshes
`heartbeat_at`. Every write the run makes is conditioned on (status running, its attempt): a run
that was given up on and comes back cannot overwrite the newer one (fencing). `workbench.recovery`
takes back the rows whose owner is gone.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, models
from django.db.models import F, QuerySet
from django.utils import timezone

from workbench import faults

log = logging.getLogger(__name__)

QUEUED, RUNNING, ERROR = "queued", "running", "error"
_OWNER_PID = " pid "
_worker_name = ""


class Leased(models.Model):
    """The fields every kind of background work carries so that it can be fenced and taken back."""

    attempt = models.PositiveIntegerField(default=0, help_text="Runs started; each run's writes are fenced on it.")
    retries = models.PositiveIntegerField(default=0, help_text="Automatic take-backs since it was last started.")
    held_by = models.CharField(max_length=200, blank=True, help_text="The worker and process of the latest run.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def worker(self) -> str:
        """The Celery worker (node name) of the latest run; "" when it never ran."""
        return owner_worker(self.held_by)

    @property
    def stale(self) -> bool:
        """Running, but its heartbeat has been silent for HEARTBEAT_TIMEOUT: a worker's reaper takes
        it back at its next round (workbench.recovery). Pages show it as it is, saying so."""
        status = getattr(self, "status", None)
        return status == RUNNING and (self.heartbeat_at is None or self.heartbeat_at < silent_since())


def silent_since() -> datetime:
    """A running row whose last heartbeat is older than this (or missing) has lost its worker."""
    return timezone.now() - timedelta(seconds=settings.HEARTBEAT_TIMEOUT)


class LeaseLost(Exception):
    """This run no longer holds its row: it was taken back (and perhaps run again), or ran out of time."""


def set_worker_name(name: str) -> None:
    """Called once a worker knows its Celery node name, so its rows say which worker holds them."""
    global _worker_name
    _worker_name = name


def this_process() -> str:
    """The owner string of this process: "<worker name> pid <pid>"."""
    return f"{_worker_name or _task_hostname() or socket.gethostname()}{_OWNER_PID}{os.getpid()}"


def _task_hostname() -> str:
    from celery import current_task

    return getattr(getattr(current_task, "request", None), "hostname", None) or ""


def owner_worker(owner: str) -> str:
    """The worker named in an owner string ("<worker name> pid <pid>")."""
    return owner.rsplit(_OWNER_PID, 1)[0]


def owner_prefix(worker: str) -> str:
    """What every owner string of `worker`'s processes starts with."""
    return f"{worker}{_OWNER_PID}"


@dataclass
class Lease:
    """One run's hold on its row."""

    model: type[models.Model]
    pk: int
    attempt: int
    owner: str
    stop_field: str | None = None  # a boolean column that asks the run to stop (training's abort flag)
    started: float = field(default_factory=time.monotonic)
    lost: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    reason: str = ""

    @property
    def label(self) -> str:
        return self.model._meta.label_lower

    def rows(self) -> QuerySet[Any]:
        """This run's row, only while this run holds it: the condition of every fenced write."""
        return self.model.objects.filter(pk=self.pk, attempt=self.attempt, status=RUNNING)  # type: ignore[attr-defined]

    def update(self, **fields: Any) -> bool:
        """A fenced write; False (and the lease marked lost) when this run no longer holds the row."""
        if self.lost.is_set():
            return False
        if self.rows().update(**fields):
            return True
        self.lose("a newer attempt holds it, or it has ended")
        return False

    def insert(self, model: type[models.Model], fields: tuple[str, ...], rows: list[tuple[Any, ...]]) -> bool:
        """Insert rows only while this run holds its row, in one statement; rows already there
        (a re-delivered task) are skipped. False (and the lease lost) when the run no longer holds it.

        One statement, not a transaction around a check and an insert: a process that stalls (a
        swap storm, SIGSTOP) between the two would hold the lock and block every take-back. On
        PostgreSQL the check locks the run's row for the statement (FOR SHARE), so a take-back that
        commits meanwhile is seen; SQLite runs one writing statement at a time.
        """
        if self.lost.is_set():
            return False
        quote = connection.ops.quote_name
        names = ", ".join(quote(model._meta.get_field(f).column) for f in fields)
        values = ", ".join(["(" + ", ".join(["%s"] * len(fields)) + ")"] * len(rows))
        held = self.model._meta
        lock = " FOR SHARE" if connection.vendor == "postgresql" else ""
        sql = (f"WITH new ({names}) AS (VALUES {values}) "
               f"INSERT INTO {quote(model._meta.db_table)} ({names}) SELECT {names} FROM new "
               f"WHERE EXISTS (SELECT 1 FROM {quote(held.db_table)} WHERE {quote(held.pk.column)} = %s "
               f"AND {quote('attempt')} = %s AND {quote('status')} = %s{lock}) ON CONFLICT DO NOTHING")
        params = [v for row in rows for v in row] + [self.pk, self.attempt, RUNNING]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            if cursor.rowcount or self.rows().exists():
                return True
        self.lose("a newer attempt holds it, or it has ended")
        return False

    def end(self, **fields: Any) -> bool:
        """The run's last write, on a fresh connection: a long run may outlive its first one (a
        database restart while it worked)."""
        if not connection.in_atomic_block:
            close_old_connections()
        return self.update(**fields)

    def lose(self, reason: str) -> None:
        if not self.lost.is_set():
            self.reason = reason
            self.lost.set()
            log.warning("%s %s attempt %s: lease lost (%s)", self.label, self.pk, self.attempt, reason)

    def check(self) -> None:
        """Raise LeaseLost once this run must stop writing."""
        if self.lost.is_set():
            raise LeaseLost(self.reason)

    def beat(self) -> None:
        """The heartbeat; it reads the stop flag in the same query where there is one."""
        now = timezone.now()
        if self.stop_field is None:
            self.update(heartbeat_at=now)
        elif not self.rows().filter(**{self.stop_field: False}).update(heartbeat_at=now) and self.update(
                heartbeat_at=now):
            self.stop.set()

    def expire_if_over_time(self) -> None:
        """Enforce the hard time limit that Celery's thread pool does not: the row ends in error."""
        limit = settings.CELERY_TASK_TIME_LIMIT
        if time.monotonic() - self.started <= limit:
            return
        message = (f"It ran past the hard time limit of {limit} s (WORKBENCH_TASK_HARD_LIMIT) and was stopped.")
        fields: dict[str, Any] = {"status": ERROR, "error": message}
        if any(f.name == "finished_at" for f in self.model._meta.get_fields()):
            fields["finished_at"] = timezone.now()
        self.update(**fields)
        self.lose(message)


def lease_claim(model: type[models.Model], pk: int, *, stop_field: str | None = None,
                **fields: Any) -> Lease | None:
    """Claim a queued row for this process (None when another delivery has it or it is not queued)."""
    owner = this_process()
    queued = model.objects.filter(pk=pk, status=QUEUED)  # type: ignore[attr-defined]
    if stop_field is not None:
        queued = queued.filter(**{stop_field: False})
    if not queued.update(status=RUNNING, attempt=F("attempt") + 1, held_by=owner, heartbeat_at=timezone.now(),
                         **fields):
        return None
    # Nobody takes a row back whose heartbeat was just written by a live owner: this read is ours.
    attempt = model.objects.filter(pk=pk).values_list("attempt", flat=True).get()  # type: ignore[attr-defined]
    return Lease(model, pk, attempt, owner, stop_field)


@contextmanager
def heartbeat(lease: Lease, every: float | None = None) -> Iterator[Lease]:
    """Beat for `lease` on a thread of its own while the body runs, and hold it to the time limit."""
    interval = every or settings.HEARTBEAT_SECONDS
    done = threading.Event()

    def beat() -> None:
        try:
            while not done.wait(interval) and not lease.lost.is_set():
                try:
                    close_old_connections()
                    lease.beat()
                    lease.expire_if_over_time()
                except Exception:  # a database hiccup: the next beat tries again
                    log.exception("heartbeat of %s %s failed", lease.label, lease.pk)
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"heartbeat-{lease.label}-{lease.pk}", daemon=True)
    thread.start()
    try:
        faults.pause(f"claimed:{lease.label}")
        yield lease
    finally:
        done.set()
        thread.join(timeout=interval + 5)
