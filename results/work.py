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
from typing import Any, TypeVar

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.shortcuts import get_object_or_404
from django.utils import timezone

from jobs.errors import JobInputError, JobStateError
from jobs.models import Snapshot, TrainingJob
from jobs.selectors import job_get, job_snapshot
from results.models import Status, _Work
from training.contract import TrainingFailed
from workbench.leases import Lease, LeaseLost, heartbeat, lease_claim
from workbench.progress import RowProgress
from workbench.queue import enqueue as send
from workbench.recovery import work_take_back

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

    The body fills the yielded dict with the result; exceptions end the row in error.
    """
    lease = lease_claim(model, pk)
    if lease is None:
        yield None
        return
    work = model.objects.select_related("job", "snapshot").get(pk=pk)
    result: dict[str, Any] = {}
    with heartbeat(lease):
        try:
            yield work, RowProgress(lease), result
        except LeaseLost:
            return  # taken back, or past its time limit: the row is not this run's to end
        except (WorkFailed, TrainingFailed, JobInputError) as exc:
            _end(lease, Status.ERROR, error=str(exc))
        except Exception as exc:
            log.exception("%s %s failed", model.__name__, pk)
            _end(lease, Status.ERROR, error=f"It failed unexpectedly ({type(exc).__name__}: {exc}).")
        else:
            _end(lease, Status.DONE, result=result)


def _end(lease: Lease, status: str, *, error: str = "", result: dict[str, Any] | None = None) -> None:
    fields: dict[str, Any] = {"status": status, "error": error, "finished_at": timezone.now()}
    if result is not None:
        fields.update(result=result, progress=1.0)
    lease.end(**fields)


def stored_or_new(model: type[W], task: str, **unique: Any) -> tuple[W, bool]:
    """The stored row for these unique fields (retried if it ended in error), or a new queued one.

    Returns (row, created). Results are kept, so asking again is instant and costs no work. A row
    whose worker went silent is taken back first, so asking again never returns a stuck one.
    """
    work_take_back(models_=[model])
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
