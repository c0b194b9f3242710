"""Reads for workers: who is serving, on which devices, and which jobs run on each."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from jobs.models import TrainingJob
from workers.models import Worker


@dataclass(frozen=True)
class DeviceView:
    reading: dict[str, Any]  # as the worker reported it (workers.probe)
    jobs: list[TrainingJob] = field(default_factory=list)  # the ones the user may see
    others: int = 0  # jobs of other users on it: counted, not named

    @property
    def busy(self) -> int:
        return len(self.jobs) + self.others


@dataclass(frozen=True)
class WorkerView:
    worker: Worker
    alive: bool
    devices: list[DeviceView]


def worker_silent_after() -> timedelta:
    """A worker not heard from for three reports is taken for stopped."""
    return timedelta(seconds=3 * settings.WORKBENCH_WORKER_REPORT_SECONDS)


def worker_list(*, user: AbstractBaseUser, include_stopped: bool = False) -> list[WorkerView]:
    """Workers heard from lately (all of them with include_stopped), with their running jobs per device,
    in two queries whatever their number. Everyone sees the workers; only staff see others' job names."""
    workers = list(Worker.objects.all())
    fresh_since = timezone.now() - worker_silent_after()
    if not include_stopped:
        workers = [w for w in workers if w.seen_at >= fresh_since]
    jobs = _running_jobs_by_worker_device()
    return [WorkerView(w, w.seen_at >= fresh_since, _devices(w, jobs.get(w.name, {}), user)) for w in workers]


def _running_jobs_by_worker_device() -> dict[str, dict[str, list[TrainingJob]]]:
    by_worker: dict[str, dict[str, list[TrainingJob]]] = defaultdict(lambda: defaultdict(list))
    running = TrainingJob.objects.filter(status=TrainingJob.Status.RUNNING).only(
        "id", "name", "owner_id", "held_by", "device_used", "device")
    for job in running:
        worker = job.held_by.rsplit(" pid ", 1)[0]
        by_worker[worker][job.device_used or job.device].append(job)
    return by_worker


def _devices(worker: Worker, jobs: dict[str, list[TrainingJob]], user: AbstractBaseUser) -> list[DeviceView]:
    views = []
    for reading in worker.devices:
        on_it = jobs.get(reading["id"], [])
        mine = [job for job in on_it if user.is_staff or job.owner_id == user.pk]
        views.append(DeviceView(reading, mine, len(on_it) - len(mine)))
    return views
