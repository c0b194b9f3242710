"""Reads for workers: who is serving, on which devices, and which jobs run on each."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from jobs.models import TrainingJob
from workers.models import DeviceLease, Worker

GIB = 1024**3


@dataclass(frozen=True)
class DeviceView:
    reading: dict[str, Any]  # as the worker reported it (workers.probe)
    jobs: list[TrainingJob] = field(default_factory=list)  # running on it or holding it: the ones the user may see
    others: int = 0  # jobs of other users on it: counted, not named
    held: frozenset[int] = frozenset()  # ids of the jobs (all users') holding it by a DeviceLease

    @property
    def busy(self) -> int:
        return len(self.jobs) + self.others

    @property
    def held_by_others(self) -> int:
        """Other users' jobs holding it: counted, not named."""
        return len(self.held) - sum(job.pk in self.held for job in self.jobs)


@dataclass(frozen=True)
class WorkerView:
    worker: Worker
    alive: bool
    devices: list[DeviceView]


Choice = tuple[str, str]


@dataclass(frozen=True)
class DeviceChoices:
    """What the job form offers: `device` for its one device, `gpus` to check for one job on several."""
    device: list[Choice]
    gpus: list[Choice]
    reported: bool  # some live worker reports a GPU


def worker_silent_after() -> timedelta:
    """A worker not heard from for three reports is taken for stopped."""
    return timedelta(seconds=3 * settings.WORKBENCH_WORKER_REPORT_SECONDS)


def worker_list(*, user: AbstractBaseUser, include_stopped: bool = False) -> list[WorkerView]:
    """Workers heard from lately (all of them with include_stopped), with the jobs on each device: the
    running ones that train there and the ones holding it (DeviceLease), in three queries whatever
    their number. Everyone sees the workers; only staff see others' job names."""
    workers = list(Worker.objects.all())
    fresh_since = timezone.now() - worker_silent_after()
    if not include_stopped:
        workers = [w for w in workers if w.seen_at >= fresh_since]
    jobs, leases = _running_jobs_by_worker_device(), _leases_by_host_device()
    return [WorkerView(w, w.seen_at >= fresh_since, _devices(w, jobs.get(w.name, {}), leases.get(w.host, {}), user))
            for w in workers]


def _running_jobs_by_worker_device() -> dict[str, dict[str, list[TrainingJob]]]:
    by_worker: dict[str, dict[str, list[TrainingJob]]] = defaultdict(lambda: defaultdict(list))
    running = TrainingJob.objects.filter(status=TrainingJob.Status.RUNNING).only(
        "id", "name", "owner_id", "held_by", "device_used", "device")
    for job in running:
        worker = job.held_by.rsplit(" pid ", 1)[0]
        for device in (job.device_used or job.device).split(", "):  # several for a job on several devices
            by_worker[worker][device].append(job)
    return by_worker


def _leases_by_host_device() -> dict[str, dict[str, list[TrainingJob]]]:
    """The jobs holding each device of each host; a CPU slot's lease ("cpu#K") counts under "cpu"."""
    by_host: dict[str, dict[str, list[TrainingJob]]] = defaultdict(lambda: defaultdict(list))
    leases = DeviceLease.objects.select_related("job").only("host", "device", "job__id", "job__name", "job__owner_id")
    for lease in leases:
        by_host[lease.host][lease.device.partition("#")[0]].append(lease.job)
    return by_host


def _devices(worker: Worker, running: dict[str, list[TrainingJob]], holding: dict[str, list[TrainingJob]],
             user: AbstractBaseUser) -> list[DeviceView]:
    views = []
    for reading in worker.devices:
        held = holding.get(reading["id"], [])
        on_it = list({job.pk: job for job in [*held, *running.get(reading["id"], [])]}.values())
        mine = [job for job in on_it if user.is_staff or job.owner_id == user.pk]
        views.append(DeviceView(reading, mine, len(on_it) - len(mine), frozenset(job.pk for job in held)))
    return views


def device_choices(*, user: AbstractBaseUser, keep: Iterable[str] = ()) -> DeviceChoices:
    """auto, cpu and each GPU a live worker reports, labelled with its host, name, memory and the jobs
    on it. A GPU in `keep` that none reports (a clone's "cuda:3") stays on offer, so a clone keeps it."""
    gpus = [(device.reading["id"], _gpu_label(view.worker, device)) for view in worker_list(user=user)
            for device in view.devices if device.reading["id"].startswith("cuda")]
    reported = {value for value, _ in gpus}
    gpus += [(value, f"{value} — no live worker reports it") for value in dict.fromkeys(keep)
             if value.startswith("cuda:") and value not in reported]
    return DeviceChoices([("auto", "auto — next free GPU, else CPU"), ("cpu", "cpu"), *gpus], gpus, bool(reported))


def _gpu_label(worker: Worker, device: DeviceView) -> str:
    total = device.reading.get("memory_total")
    parts = [worker.host, device.reading.get("name") or "", f"{total / GIB:.0f} GiB" if total else "",
             f"busy: {device.busy} job{'s' if device.busy != 1 else ''}" if device.busy else "idle"]
    return f"{device.reading['id']} — " + " · ".join(p for p in parts if p)
