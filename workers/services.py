"""Writes for workers: each worker reports itself; training jobs take and give back devices."""
from __future__ import annotations

import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from workers import devices as device_choice
from workers.models import DeviceLease, Worker


@dataclass(frozen=True)
class WorkerReport:
    name: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    started_at: datetime
    devices: list[dict[str, Any]] = field(default_factory=list)
    serving: dict[str, Any] | None = None


def worker_report(*, report: WorkerReport) -> Worker:
    """Create or update the worker's row; a restarted worker (same name) takes its row over."""
    worker, _ = Worker.objects.update_or_create(
        name=report.name,
        defaults={"host": report.host, "pid": report.pid, "queues": report.queues, "concurrency": report.concurrency,
                  "devices": report.devices, "serving": report.serving,
                  "started_at": report.started_at, "seen_at": timezone.now()})
    return worker


def worker_stopped(*, name: str) -> None:
    """A worker that shuts down cleanly says so: it leaves the list at once, not after the timeout."""
    Worker.objects.filter(name=name).delete()


# --- device leases ----------------------------------------------------------------------------

def device_lease_acquire(*, job_id: int, owner: str, requested: list[str], gpus: list[str],
                         host: str | None = None) -> list[str] | None:
    """Take the devices `requested` (workers.devices) on this host for `job_id`: the devices to train
    on, one per process, or None when some are held by other jobs (the job waits). Raises
    devices.DeviceMissing when this host can never give them. Held until device_lease_release."""
    host, slots = host or socket.gethostname(), settings.WORKBENCH_CPU_SLOTS
    unheld = device_choice.choose(requested, gpus, set(), slots)  # what it would get on an idle host
    if unheld is not None and not any(pick.lease for pick in unheld):  # shared CPU processes: nothing to hold
        return [pick.device for pick in unheld]
    _release_stale(host)
    taken = set(DeviceLease.objects.filter(host=host).exclude(job_id=job_id).values_list("device", flat=True))
    picks = device_choice.choose(requested, gpus, taken, slots)
    if picks is None:
        return None
    now = timezone.now()
    try:
        with transaction.atomic():  # the unique (host, device) decides between two jobs that chose at once
            DeviceLease.objects.filter(host=host, job_id=job_id).delete()  # a re-delivered task's own
            DeviceLease.objects.bulk_create([DeviceLease(host=host, device=p.lease, job_id=job_id, owner=owner,
                                                         acquired_at=now) for p in picks if p.lease])
    except IntegrityError:
        return None
    return [pick.device for pick in picks]


def device_lease_release(*, job_id: int, owner: str) -> None:
    DeviceLease.objects.filter(job_id=job_id, owner=owner).delete()


def device_lease_holders(*, host: str | None = None) -> dict[str, int]:
    """Which job holds each leased device of this host (lease key → job id), for a waiting job's log."""
    return dict(DeviceLease.objects.filter(host=host or socket.gethostname()).values_list("device", "job_id"))


def _release_stale(host: str) -> None:
    """Leases whose job no longer runs under the process that took them: a killed worker's (its job
    was taken back, or ended), or a process that died between taking them and claiming the job."""
    grace = timezone.now() - timedelta(seconds=settings.HEARTBEAT_TIMEOUT)
    DeviceLease.objects.filter(host=host, acquired_at__lt=grace).exclude(
        job__status="running", job__held_by=F("owner")).delete()
