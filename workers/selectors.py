"""Reads for workers: who is serving, on which devices, and which jobs run on each."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
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


# What each queue a worker consumes makes it, in the words of the Workers page.
ROLES = {"train": "Training", "background": "Background (ingest, evaluation, export)", "infer": "Serving"}
HIDDEN_MODEL = "a model of another user"


@dataclass(frozen=True)
class WarmModelView:
    """One model a serving worker holds loaded; named only when the user may see its job."""
    name: str  # as the worker reported it (jobs/12/snapshots/epoch_3.safetensors), or HIDDEN_MODEL
    backend: str
    bytes: int
    hits: int
    loaded_at: float  # epoch seconds
    job: int | None  # its job's id, when the user may see that job

    @property
    def loaded(self) -> datetime:
        return datetime.fromtimestamp(self.loaded_at, tz=dt_timezone.utc)


@dataclass(frozen=True)
class ServingView:
    """A serving worker's capacity as it reported it (Worker.serving), its models named for the user."""
    device: str
    models: list[WarmModelView]
    bytes: int
    capacity_bytes: int
    batches: int
    requests: int
    largest_batch: int

    @property
    def mean_batch(self) -> float | None:
        return self.requests / self.batches if self.batches else None


@dataclass(frozen=True)
class WorkerView:
    worker: Worker
    alive: bool
    devices: list[DeviceView]
    serving: ServingView | None = None

    @property
    def roles(self) -> list[str]:
        """What its queues make it ("Training", "Serving", ...); a queue of no known role as it is named."""
        return [ROLES.get(queue, queue) for queue in self.worker.queues]


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
    running ones that train there and the ones holding it (DeviceLease), and what each serving worker
    holds warm, in four queries whatever their number. Everyone sees the workers; only staff see
    others' job names, and the names of models of others' jobs."""
    workers = list(Worker.objects.all())
    fresh_since = timezone.now() - worker_silent_after()
    if not include_stopped:
        workers = [w for w in workers if w.seen_at >= fresh_since]
    jobs, leases = _running_jobs_by_worker_device(), _leases_by_host_device()
    visible = _visible_jobs(workers, user)
    return [WorkerView(w, w.seen_at >= fresh_since, _devices(w, jobs.get(w.name, {}), leases.get(w.host, {}), user),
                       _serving(w.serving, visible, user)) for w in workers]


def warm_model_job(name: str) -> int | None:
    """The job a warm model belongs to: its name is its path from the jobs folder (jobs/12/...; see
    jobs.models.TrainingJob.folder); None for a name that is not."""
    parts = name.split("/")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "jobs" and parts[1].isdigit() else None


def _visible_jobs(workers: list[Worker], user: AbstractBaseUser) -> set[int]:
    """Of the jobs whose models the serving workers hold, the ones the user may see: one query."""
    ids = {warm_model_job(model["name"]) for w in workers for model in (w.serving or {}).get("models", [])} - {None}
    if not ids:
        return set()
    found = TrainingJob.objects.filter(pk__in=ids)
    return set((found if user.is_staff else found.filter(owner_id=user.pk)).values_list("pk", flat=True))


def _serving(reported: dict[str, Any] | None, visible: set[int], user: AbstractBaseUser) -> ServingView | None:
    if reported is None:
        return None
    models = []
    for model in reported.get("models", []):
        job = warm_model_job(model["name"])
        shown = job in visible or user.is_staff  # staff see every name; a link needs a job that is there
        models.append(WarmModelView(model["name"] if shown else HIDDEN_MODEL, model.get("backend", ""),
                                    model["bytes"], model.get("hits", 0), model.get("loaded_at", 0.0),
                                    job if job in visible else None))
    return ServingView(reported.get("device", ""), models, reported.get("bytes", 0), reported.get("capacity_bytes", 0),
                       reported.get("batches", 0), reported.get("requests", 0), reported.get("largest_batch", 0))


def _running_jobs_by_worker_device() -> dict[str, dict[str, list[TrainingJob]]]:
    by_worker: dict[str, dict[str, list[TrainingJob]]] = defaultdict(lambda: defaultdict(list))
    running = TrainingJob.objects.filter(status=TrainingJob.Status.RUNNING).only(
        "id", "name", "owner_id", "held_by", "device_used", "device")
    for job in running:
        worker = job.worker
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
