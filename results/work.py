"""The life of one piece of result work (evaluate, classify many, export, compress).

Same rules as training: the task claims the row with a conditional update (workbench.leases), beats
a heartbeat, reports progress to it, and ends it as done with a result or as error with a message
worded for the user; every write is fenced on the run's attempt. A killed run is taken back and
simply started again (workbench.recovery).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.shortcuts import get_object_or_404
from django.utils import timezone

from jobs.errors import JobInputError, JobStateError
from jobs.models import Snapshot, TrainingJob
from jobs.selectors import job_get, job_snapshot
from results.models import Status, _Work
from training.contract import TrainingFailed
from workbench.leases import Lease, lease_claim
from workbench.progress import RowProgress
from workbench.queue import enqueue as send
from workbench.runner import LeasedRun, leased
from workbench.storage import StoreUnavailable

log = logging.getLogger(__name__)
W = TypeVar("W", bound=_Work)


class WorkFailed(Exception):
    """A failure worded for the user; the row ends in error with this message (the API: a 409)."""

    http_status = 409


def done_snapshot(*, job: TrainingJob, epoch: float | None, action: str) -> Snapshot:
    """The snapshot to use the result of a done job with; `action` words the refusal otherwise."""
    if job.status != TrainingJob.Status.DONE:
        raise JobStateError(f"The job is {job.status}; {action} it once it is done.")
    return job_snapshot(job=job, epoch=epoch)


def offered_choice(*, value: str, offered: list[str], known: dict[str, Any], unknown: str, cannot: str,
                   field: str) -> None:
    """Refuse a choice the job's backend does not offer, naming the ones it does.

    `unknown` words a value the product does not know at all; `cannot` one it knows but this
    backend cannot do, e.g. "The lite backend cannot export".
    """
    if value not in offered:
        reason = unknown if value not in known else cannot
        raise JobInputError(f"{reason} '{value}'; choose one of {', '.join(offered) or 'none'}.", field)


def work_get(*, user: AbstractBaseUser, model: type[W], job_pk: int, pk: int) -> W:
    """The work item if its job is the user's (or the user is staff); else a 404."""
    job = job_get(user=user, pk=job_pk)
    return get_object_or_404(model, pk=pk, job=job)


@contextmanager
def claimed(model: type[W], pk: int) -> Iterator[tuple[W, RowProgress, dict[str, Any]] | None]:
    """Claim a queued row (None if another delivery has it), then end it as done or error.

    The body fills the yielded dict with the result; exceptions end the row in error
    (workbench.runner).
    """
    run = _ResultRun(model, pk)
    with leased(run) as lease:
        yield None if lease is None else (run.work, RowProgress(lease), run.result)


class _ResultRun(LeasedRun, Generic[W]):
    """A result kind under workbench.runner: done with its result, or error with a message."""

    worded = (WorkFailed, TrainingFailed, JobInputError, StoreUnavailable)
    logger = log

    def __init__(self, model: type[W], pk: int) -> None:
        self.model, self.pk = model, pk
        self.result: dict[str, Any] = {}

    def claim(self) -> Lease | None:
        lease = lease_claim(self.model, self.pk)
        if lease is not None:
            self.work = self.model.objects.select_related("job", "snapshot").get(pk=self.pk)
        return lease

    def done(self, lease: Lease) -> None:
        _end(lease, Status.DONE, result=self.result)

    def failed(self, lease: Lease, message: str) -> None:
        _end(lease, Status.ERROR, error=message)

    def describe(self) -> str:
        return f"{self.model.__name__} {self.pk}"


def _end(lease: Lease, status: str, *, error: str = "", result: dict[str, Any] | None = None) -> None:
    fields: dict[str, Any] = {"status": status, "error": error, "finished_at": timezone.now()}
    if result is not None:
        fields.update(result=result, progress=1.0)
    lease.end(**fields)


def stored_or_new(model: type[W], task: str, **unique: Any) -> tuple[W, bool]:
    """The stored row for these unique fields (retried if it ended in error), or a new queued one.

    Returns (row, created). Results are kept, so asking again is instant and costs no work. A row
    whose worker went silent is returned as it is: a worker's reaper takes it back (workbench.recovery)
    and the same row runs again.
    """
    existing = model.objects.filter(**unique).first()
    if existing is not None and existing.status != Status.ERROR:
        return existing, False
    try:
        with transaction.atomic():
            if existing is not None:
                existing.delete()
            new = model.objects.create(**unique)
            enqueue(task, new.pk)
    except IntegrityError:  # a concurrent request created it first
        return model.objects.get(**unique), False
    return new, True


def enqueue(task: str, pk: int) -> None:
    """Queue the task named `task` for this row once the transaction commits."""
    transaction.on_commit(lambda: send(task, pk))
