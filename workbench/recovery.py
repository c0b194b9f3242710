"""Taking back work whose worker is gone: queued again by itself, or failed after too many attempts.

One mechanism for every kind of background work. Each app registers its kinds (the model and the
task that runs a row) in its AppConfig.ready(). A row is taken back when
- the worker that starts is the one that held it, in an earlier process (at once: that process is
  dead, since a worker name is held by one process at a time), or
- its heartbeat has been silent for HEARTBEAT_TIMEOUT seconds (the reaper of any live worker notices;
  pages and the API only show such a row as it is, never take it back: a GET writes nothing).
A taken-back row is queued again up to WORKBENCH_MAX_ATTEMPTS attempts in a row, then ends in
error with a message that says how many attempts failed and why. The take-back itself is a fenced
UPDATE on the attempt it saw, so two reapers never both re-queue one row.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, models, transaction
from django.db.models import F, Q
from django.utils import timezone

from workbench.leases import ERROR, QUEUED, RUNNING, owner_prefix, silent_since, this_process

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkKind:
    """A kind of background work: its rows, the task that runs one, and what a retry needs."""

    model: type[models.Model]
    task: str
    # Fields for the re-queued row (training: the snapshot to resume from). A "status" other
    # than queued ends the row instead (training: an abort asked before the worker died).
    retry: Callable[[Any], dict[str, Any]] = lambda row: {}
    # Told of each take-back, inside its transaction, with the reason and whether the row was
    # queued again (training drops the points its resumed attempt will compute again).
    taken_back: Callable[[Any, str, bool], None] = lambda row, reason, queued: None


_KINDS: list[WorkKind] = []
# Called by the reaper after each round of take-backs: work that is driven by events (a sweep moves
# on when one of its jobs ends) uses one to catch up when such an event was lost with its worker.
_CHECKS: list[Callable[[], object]] = []


def register(kind: WorkKind) -> None:
    if all(k.model is not kind.model for k in _KINDS):
        _KINDS.append(kind)


def kinds() -> list[WorkKind]:
    return list(_KINDS)


def register_check(check: Callable[[], object]) -> None:
    if check not in _CHECKS:
        _CHECKS.append(check)


def run_checks() -> None:
    for check in _CHECKS:
        try:
            check()
        except Exception:
            log.exception("periodic check %s failed; the next round tries again", check)


def work_take_back(*, worker: str | None = None, models_: Iterable[type[models.Model]] | None = None) -> int:
    """Take back every running row whose run is gone; returns how many rows were taken back.

    `worker` is the name of a worker that is starting: what its earlier processes held is gone now.
    """
    wanted = set(models_) if models_ is not None else None
    return sum(_take_back_kind(kind, worker) for kind in _KINDS if wanted is None or kind.model in wanted)


def work_lost(*, model: type[models.Model], pk: int, attempt: int, reason: str) -> int:
    """A run that knows it cannot go on (a process of a several-device run died) gives its row back
    now, as a reaper would once its heartbeat fell silent: queued again, or ended after too many."""
    kind = next(k for k in _KINDS if k.model is model)
    row = model.objects.get(pk=pk)  # type: ignore[attr-defined]
    return _take_back(kind, row, reason, Q(attempt=attempt))


def _take_back_kind(kind: WorkKind, worker: str | None) -> int:
    cutoff = silent_since()
    silent = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True)
    restarted = Q(held_by__startswith=owner_prefix(worker)) & ~Q(held_by=this_process()) if worker else Q(pk__in=[])
    taken = 0
    for row in kind.model.objects.filter(status=RUNNING).filter(silent | restarted):  # type: ignore[attr-defined]
        same_worker = bool(worker) and row.held_by.startswith(owner_prefix(worker or "")) and row.held_by != this_process()
        if same_worker:
            reason = f"its worker restarted ({row.held_by} is gone)"
            gone = Q(held_by=row.held_by)
        else:
            reason = f"no heartbeat from {row.held_by or 'its worker'} for over {settings.HEARTBEAT_TIMEOUT} s"
            gone = silent
        try:
            taken += _take_back(kind, row, reason, gone)
        except DatabaseError:  # e.g. its row is locked by a stalled process: the next round tries again
            log.warning("could not take back %s %s now", kind.model._meta.label_lower, row.pk, exc_info=True)
    return taken


def _take_back(kind: WorkKind, row: Any, reason: str, gone: Q) -> int:
    attempts = row.retries + 1
    limit = settings.WORKBENCH_MAX_ATTEMPTS
    if attempts >= limit:
        fields: dict[str, Any] = {
            "status": ERROR,
            "error": f"It failed {attempts} attempt{'s' if attempts > 1 else ''} in a row: each time the worker "
                     f"running it was lost (the last time: {reason}). WORKBENCH_MAX_ATTEMPTS is {limit}."}
    else:
        fields = {"status": QUEUED, "retries": F("retries") + 1, **kind.retry(row)}
    if fields["status"] != QUEUED and _has_field(kind.model, "finished_at"):
        fields["finished_at"] = timezone.now()
    queued = fields["status"] == QUEUED
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # A stalled process may hold the row (until idle_in_transaction_session_timeout ends
            # its session): wait a little, not forever, and leave it to the next round.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '5s'")
        # Fenced on the attempt seen: another reaper, or the owner beating again, wins instead.
        done = kind.model.objects.filter(pk=row.pk, attempt=row.attempt, status=RUNNING).filter(gone).update(**fields)  # type: ignore[attr-defined]
        if done:
            kind.taken_back(row, reason, queued)
        if done and queued:
            transaction.on_commit(lambda: current_app.send_task(kind.task, args=[row.pk]))
    if done:
        log.warning("took back %s %s (attempt %s): %s; %s", kind.model._meta.label_lower, row.pk, row.attempt,
                    reason, "queued again" if queued else f"ended as {fields['status']}")
    return done


def _has_field(model: type[models.Model], name: str) -> bool:
    return any(f.name == name for f in model._meta.get_fields())


# --- on the worker ----------------------------------------------------------------------------

class Reaper:
    """Takes back silent work every HEARTBEAT_TIMEOUT / 3 seconds, on a thread of its own."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        every = max(settings.HEARTBEAT_TIMEOUT / 3, 0.5)
        try:
            while not self._stop.wait(every):
                try:
                    close_old_connections()
                    work_take_back()
                    run_checks()
                except Exception:
                    log.exception("taking back silent work failed; trying again in %.0f s", every)
        finally:
            connection.close()
