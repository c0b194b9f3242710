"""Writes for training jobs and networks. Views and tasks call these and nothing else."""
from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from datasets.models import Dataset
from jobs import hooks
from jobs.errors import JobInputError, JobStateError
from jobs.models import LogLine, MetricPoint, TrainingJob
from jobs.options import (
    GROUP_MAX_LENGTH,
    MAX_DEVICES,
    NOTES_MAX_LENGTH,
    RANK_DEVICE_PATTERN,
    SETTINGS,
    JobSettings,
    with_network_defaults,
)
from jobs.selectors import job_capabilities, job_log_tail
from jobs.uploads import snapshot_paths
from live import wakeup
from networks.errors import NetworkInputError
from networks.models import Network
from networks.selectors import network_resolve
from networks.spec import SpecError, summarize
from training.augmentation import Augmentation, AugmentationError, augmentation_parse
from training.contract import RunLost, TrainingFailed
from training.vision_tasks import vision_task
from workbench import cache
from workbench.leases import Lease, LeaseLost, lease_claim
from workbench.queue import enqueue
from workbench.runner import LeasedRun, run_leased
from workbench.storage import retrying, store

log = logging.getLogger(__name__)


# --- create, clone ----------------------------------------------------------------------------

def job_create(*, owner: AbstractBaseUser, dataset: Dataset, network: str, options: JobSettings,
               given: Collection[str] | None = None) -> TrainingJob:
    """Check everything that can be checked before a worker sees the job, then queue it.

    `network` blank: the dataset's task's default built-in. `given`: the settings the user gave;
    the others take the built-in network's own defaults (jobs.options.with_network_defaults).
    None: every setting was given (a clone, a sweep's trial)."""
    if dataset.status != Dataset.Status.READY:
        raise JobInputError(f"The dataset '{dataset.name}' is not ready (status: {dataset.status}).", "dataset")
    network = network or vision_task(dataset.task).default_network
    options = with_network_defaults(options, network, given)
    _check_backend_trains(options, dataset)
    spec, custom = job_network_check(owner=owner, network=network, dataset=dataset)
    _check_backend_builds(options, spec)
    job_options_check(options)
    fields = asdict(options)
    fields["augmentation"] = job_augmentation_check(options, dataset)
    _check_amp(options)
    _check_devices(options)
    fields["pretrained"], fields["pretrained_report"] = _checked_pretrained(owner, options, spec, dataset)
    fields["backend"] = options.backend or settings.DEFAULT_TRAINING_BACKEND
    fields["name"] = options.name or f"{network} on {dataset.name}"
    with transaction.atomic():
        job = TrainingJob.objects.create(owner=owner, dataset=dataset, network=network, custom_network=custom,
                                         network_spec=spec, **fields)
        # A rolled-back insert can hand the same id out again: never inherit its snapshots.
        shutil.rmtree(job.folder, ignore_errors=True)
        _enqueue(job)
    return job


def job_network_check(*, owner: AbstractBaseUser, network: str,
                      dataset: Dataset) -> tuple[dict[str, Any], Network | None]:
    """The network's spec if it exists for this user and fits the dataset; JobInputError otherwise."""
    try:
        spec, custom = network_resolve(user=owner, network=network, dataset=dataset)
    except NetworkInputError as exc:
        raise JobInputError(str(exc), exc.field) from None
    try:
        outputs = vision_task(dataset.task).outputs(dataset.classes)
        summarize(spec, tuple(dataset.image_shape), outputs)  # type: ignore[arg-type]
    except SpecError as exc:
        raise JobInputError(f"The network does not fit this dataset: {exc}", "network") from None
    return spec, custom


def job_options_check(options: JobSettings) -> None:
    """Every setting within its bounds and choices (jobs.options.SETTINGS); JobInputError naming the
    first that is not."""
    for name, setting in SETTINGS.items():
        if not setting.holds(getattr(options, name)):
            raise JobInputError(setting.refusal(), name)
    if options.backend and options.backend not in settings.TRAINING_BACKENDS:
        raise JobInputError(f"Unknown backend; configured: {', '.join(settings.TRAINING_BACKENDS)}.", "backend")
    if not all(m > 0 for m in options.lr_milestones):
        raise JobInputError("Milestones are epochs above 0.", "lr_milestones")


def job_augmentation_check(options: JobSettings, dataset: Dataset) -> dict[str, Any]:
    """The augmentation keys the user gave, normalised; refused with the key named."""
    raw = options.augmentation or {}
    try:
        spec = augmentation_parse(raw, channels=dataset.channels)
    except AugmentationError as exc:
        raise JobInputError(str(exc), "augmentation") from None
    alias = options.backend or settings.DEFAULT_TRAINING_BACKEND
    if spec != Augmentation() and not _backend_class(alias).supports_augmentation:
        raise JobInputError(f"The {alias} backend cannot augment training batches nor change the mean it "
                            "subtracts.", "augmentation")
    applied, given, plain = _backend_class(alias).augmentation_keys, spec.as_dict(), Augmentation().as_dict()
    for key in raw:
        if applied is not None and key != "mean" and key not in applied and given[key] != plain[key]:
            raise JobInputError(f"augmentation.{key}: the {alias} backend does not apply it (it applies "
                                f"{', '.join(applied)}).", "augmentation")
    return {key: value for key, value in spec.as_dict().items() if key in raw}


def _check_backend_trains(options: JobSettings, dataset: Dataset) -> None:
    """The backend trains the dataset's vision task (its class's `tasks`)."""
    alias = options.backend or settings.DEFAULT_TRAINING_BACKEND
    if alias not in settings.TRAINING_BACKENDS:
        return  # _check_options names the unknown backend
    if dataset.task not in _backend_class(alias).tasks:
        raise JobInputError(f"The {alias} backend does not train {dataset.task} datasets.", "backend")


def _check_backend_builds(options: JobSettings, spec: dict[str, Any]) -> None:
    """The backend builds every layer of the network (its class's `layer_types`)."""
    alias = options.backend or settings.DEFAULT_TRAINING_BACKEND
    if alias not in settings.TRAINING_BACKENDS:
        return  # job_options_check names the unknown backend
    if refused := _backend_class(alias).unbuildable_layer(spec):
        path, kind = refused
        raise JobInputError(f"The {alias} backend cannot build layer {path} ({kind}); choose another network "
                            "or backend.", "network")


def _check_amp(options: JobSettings) -> None:
    alias = options.backend or settings.DEFAULT_TRAINING_BACKEND
    modes = _backend_class(alias).amp_modes
    if options.amp not in modes:
        raise JobInputError(f"The {alias} backend offers mixed precision {', '.join(modes)}.", "amp")


def _check_devices(options: JobSettings) -> None:
    """`devices`: each one a process of one job, all on one kind of device, no GPU named twice."""
    devices = options.devices
    if not isinstance(devices, list) or not all(isinstance(d, str) and RANK_DEVICE_PATTERN.match(d) for d in devices):
        raise JobInputError("List the devices as cpu, cuda (the next free GPU) or cuda:N, one per process.", "devices")
    if len(devices) > MAX_DEVICES:
        raise JobInputError(f"One job runs on at most {MAX_DEVICES} devices.", "devices")
    if len({d.partition(":")[0] for d in devices}) > 1:
        raise JobInputError("All the devices of one job are GPUs, or all are CPU processes.", "devices")
    named = [d for d in devices if ":" in d]
    if len(named) != len(set(named)):
        raise JobInputError("A GPU is named twice: each process of a job has a GPU of its own.", "devices")
    alias = options.backend or settings.DEFAULT_TRAINING_BACKEND
    if len(devices) > 1 and not _backend_class(alias).supports_distributed:
        raise JobInputError(f"The {alias} backend trains a job on one device.", "devices")
    if options.compile and not _backend_class(alias).supports_compile:
        raise JobInputError(f"The {alias} backend cannot compile networks.", "compile")


def _checked_pretrained(owner: AbstractBaseUser, options: JobSettings, spec: dict[str, Any],
                        dataset: Dataset) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the job starts from and the compatibility report; ({}, {}) for a fresh start."""
    if not options.pretrained:
        if options.freeze_epochs or options.pretrained_lr_mult != 1.0:
            raise JobInputError("Freezing and the learning-rate multiplier apply to pretrained weights: "
                                "choose what the job starts from.", "pretrained")
        return {}, {}
    from pretrained.services import job_pretrained_check

    return job_pretrained_check(owner=owner, given=options.pretrained, spec=spec, dataset=dataset)


def _backend_class(alias: str) -> Any:
    from training.backends import backends

    return backends.backend_class(alias)


def job_clone(*, job: TrainingJob, owner: AbstractBaseUser) -> TrainingJob:
    settings_ = job_settings(job=job)
    options = JobSettings(**{**asdict(settings_), "name": f"{job.name} (clone)"})
    return job_create(owner=owner, dataset=job.dataset, network=job.network, options=options)


def job_settings(*, job: TrainingJob) -> JobSettings:
    names = JobSettings.__dataclass_fields__
    return JobSettings(**{name: getattr(job, name) for name in names})


def _enqueue(job: TrainingJob) -> None:
    job.folder.mkdir(parents=True, exist_ok=True)
    transaction.on_commit(lambda: enqueue("jobs.train", job.pk))


# --- lifecycle --------------------------------------------------------------------------------

def job_abort(*, job: TrainingJob) -> TrainingJob:
    """A queued job stops at once; a running one is flagged and stops at its next step."""
    now = timezone.now()
    if TrainingJob.objects.filter(pk=job.pk, status=TrainingJob.Status.QUEUED).update(
            status=TrainingJob.Status.ABORTED, abort_requested=True, finished_at=now, stop_reason="user"):
        wakeup.notify(job.pk)
        transaction.on_commit(lambda: hooks.job_ended(job.pk))
    elif not TrainingJob.objects.filter(pk=job.pk, status=TrainingJob.Status.RUNNING).update(abort_requested=True):
        raise JobStateError(f"Only queued or running jobs can be aborted; this one is {job.status}.")
    job.refresh_from_db()
    return job


def job_resume(*, job: TrainingJob) -> TrainingJob:
    """Queue an interrupted, aborted or failed job again from its last snapshot."""
    if not job_capabilities(job=job).resume:
        raise JobStateError(f"The {job.backend} backend cannot resume a job; clone it to train again from the start.")
    resumable = (TrainingJob.Status.INTERRUPTED, TrainingJob.Status.ABORTED, TrainingJob.Status.ERROR)
    last = job.snapshots.order_by("-epoch").first()
    if job.status not in resumable or last is None:
        raise JobStateError("Only an interrupted, aborted or failed job with a snapshot can be resumed.")
    with transaction.atomic():
        TrainingJob.objects.filter(pk=job.pk).update(
            status=TrainingJob.Status.QUEUED, resume_from_epoch=last.epoch, abort_requested=False, error="",
            finished_at=None, retries=0, started_at=None, stop_reason="")
        job.refresh_from_db()
        rewind_points(job)
        _enqueue(job)
    job.refresh_from_db()
    return job


def job_update(*, job: TrainingJob, notes: str | None = None, group: str | None = None) -> TrainingJob:
    """Change what a job's owner may change at any time: its notes and its group (None: unchanged)."""
    fields = {name: value for name, value in (("notes", notes), ("group", group)) if value is not None}
    if group is not None and len(group.strip()) > GROUP_MAX_LENGTH:
        raise JobInputError(f"A group name has at most {GROUP_MAX_LENGTH} characters.", "group")
    if notes is not None and len(notes) > NOTES_MAX_LENGTH:
        raise JobInputError(f"Notes have at most {NOTES_MAX_LENGTH} characters.", "notes")
    if "group" in fields:
        fields["group"] = fields["group"].strip()
    TrainingJob.objects.filter(pk=job.pk).update(**fields)
    job.refresh_from_db()
    return job


@dataclass(frozen=True)
class BulkOutcome:
    done: list[TrainingJob]
    refused: list[tuple[TrainingJob, str]]  # each job that was left as it was, and why


def jobs_bulk(*, jobs: list[TrainingJob], action: str) -> BulkOutcome:
    """Abort or delete each job in turn; one that cannot be (finished, still running) is left, with the reason."""
    act = {"abort": job_abort, "delete": job_delete}[action]
    done: list[TrainingJob] = []
    refused: list[tuple[TrainingJob, str]] = []
    for job in jobs:
        try:
            act(job=job)
        except JobStateError as exc:
            refused.append((job, str(exc)))
        else:
            done.append(job)
    return BulkOutcome(done, refused)


def job_delete(*, job: TrainingJob) -> None:
    if job.is_active:
        raise JobStateError("The job is still queued or running; abort it before deleting it.")
    folder = job.folder
    with transaction.atomic():
        job.delete()
        transaction.on_commit(lambda: store().delete_folder(folder))


def job_retry_fields(job: TrainingJob) -> dict[str, Any]:
    """How a taken-back job goes on: from its last snapshot, or ends as aborted if that was asked."""
    if job.abort_requested:
        return {"status": TrainingJob.Status.ABORTED, "stop_reason": "user"}
    last = job.snapshots.order_by("-epoch").first()
    return {"resume_from_epoch": last.epoch if last is not None else None}


def job_taken_back(job: TrainingJob, reason: str, queued: bool) -> None:
    """Inside the take-back: drop the points the next attempt computes again (so a live page that
    reloads on the status change draws the curve once), a line in the log, a wake-up for streams."""
    if queued:
        fresh = rewind_points(TrainingJob.objects.get(pk=job.pk))
        start = (f"the snapshot at epoch {fresh.resume_from_epoch:g}" if fresh.resume_from_epoch is not None
                 else "the start (no snapshot yet)")
        line = (f"Attempt {job.attempt} was lost: {reason}. Queued again by itself to resume from {start} "
                f"(automatic retry {fresh.retries} of {settings.WORKBENCH_MAX_ATTEMPTS - 1}).")
    else:
        line = f"Attempt {job.attempt} was lost: {reason}. Not retried."
    append_log(job, line)
    transaction.on_commit(lambda: wakeup.notify(job.pk))


def append_log(job: TrainingJob, line: str) -> None:
    """One line at the end of the job's log, stamped now. Not fenced: its callers (a take-back, a wait for
    devices) hold no run of the job."""
    LogLine.objects.create(job_id=job.pk, at=timezone.now(), text=line)


# --- training (runs on the worker) ------------------------------------------------------------

def job_train(*, job_id: int) -> bool:
    """Claim a queued job and train it on devices it holds alone; a second delivery of the same task
    finds it claimed. False when its devices are busy: the caller puts it at the back of the queue.

    Every write of this run is fenced on its attempt (workbench.leases): if the run is taken back
    while it stalls and another attempt starts, this one stops at its next step and writes nothing.
    """
    from training.backends import backends
    from workbench.leases import this_process
    from workers.devices import DeviceMissing, asked
    from workers.services import device_lease_release

    job = TrainingJob.objects.filter(pk=job_id, status=TrainingJob.Status.QUEUED, abort_requested=False).first()
    if job is None:
        return True
    owner, backend = this_process(), backends[job.backend]
    requested = asked(job.device, job.devices)
    gpus = [d for d in backend.devices() if d.startswith("cuda")]
    try:
        devices = _devices_wait(job_id, owner, requested, gpus)
    except DeviceMissing as exc:
        _refuse_devices(job_id, str(exc))
        return True
    if devices is None:
        _log_waiting(job, requested, gpus)
        return False
    try:
        lost = _train_claimed(job_id, tuple(devices))
    finally:
        device_lease_release(job_id=job_id, owner=owner)
    if lost is not None:  # after the devices are free: the run queued again may want them at once
        from workbench.recovery import work_lost

        work_lost(model=TrainingJob, pk=job_id, attempt=lost[0], reason=lost[1])
    return True


def _devices_wait(job_id: int, owner: str, requested: list[str], gpus: list[str]) -> list[str] | None:
    """The devices, once free; None after WORKBENCH_DEVICE_WAIT_SECONDS of trying."""
    from workers.services import device_lease_acquire

    deadline = time.monotonic() + settings.WORKBENCH_DEVICE_WAIT_SECONDS
    while True:
        devices = device_lease_acquire(job_id=job_id, owner=owner, requested=requested, gpus=gpus)
        if devices is not None or time.monotonic() >= deadline:
            return devices
        time.sleep(0.5)


def _log_waiting(job: TrainingJob, requested: list[str], gpus: list[str]) -> None:
    """One log line while a job waits for busy devices (not one per try)."""
    from workers.devices import describe
    from workers.services import device_lease_holders

    held = ", ".join(f"{device} by job {pk}" for device, pk in sorted(device_lease_holders().items()))
    line = (f"Waiting for {describe(requested, gpus)}: held now: {held or 'none (freed since)'}. It stays queued "
            "and starts once they are free.")
    if "Waiting for" not in "".join(job_log_tail(job=job, lines=1)):
        append_log(job, line)
        wakeup.notify(job.pk)


def _refuse_devices(job_id: int, message: str) -> None:
    """A job asking for devices this worker never has ends in error, saying so."""
    lease = lease_claim(TrainingJob, job_id, stop_field="abort_requested", started_at=timezone.now())
    if lease is not None:
        append_log(TrainingJob.objects.get(pk=job_id), f"Error: {message}")
        _finish(lease, TrainingJob.Status.ERROR, message)


def _train_claimed(job_id: int, devices: tuple[str, ...]) -> tuple[int, str] | None:
    """Train the job if this run claims it; (attempt, reason) when a part of the run died."""
    run = _TrainingRun(job_id, devices)
    run_leased(run)
    return run.run_lost


class _TrainingRun(LeasedRun):
    """A training job under workbench.runner. The backend's outcome (done, aborted) or its error
    ends the job after the reporter has written its last reports; every line goes to the job's log.
    A lost part of a several-device run (RunLost) ends nothing here: job_train gives the job back."""

    worded = (TrainingFailed,)
    gone = (LeaseLost, RunLost)
    logger = log

    def __init__(self, job_id: int, devices: tuple[str, ...]) -> None:
        self.pk, self.devices = job_id, devices
        self.outcome = ""
        self.run_lost: tuple[int, str] | None = None

    def claim(self) -> Lease | None:
        from jobs.reporting import DatabaseReporter

        # started_at is the first attempt's: a resumed job's elapsed time counts the time it lost.
        lease = lease_claim(TrainingJob, self.pk, stop_field="abort_requested",
                            started_at=Coalesce(F("started_at"), Value(timezone.now())), error="")
        if lease is None:
            return None
        wakeup.notify(self.pk)
        # A resumed attempt finds its points already rewound: by the take-back or the resume that queued it.
        self.job = TrainingJob.objects.select_related("dataset").get(pk=self.pk)
        self.job.folder.mkdir(parents=True, exist_ok=True)  # a host that did not create the job has none
        self.reporter = DatabaseReporter(lease, latest=self.job.latest, best=self.job.best)
        return lease

    def body(self, lease: Lease) -> None:
        from training.backends import backends

        resume = self.job.snapshots.filter(epoch=self.job.resume_from_epoch).first()
        if resume is not None and store().remote:  # perhaps written on another host: it is in the store
            files = snapshot_paths(self.job.folder, resume.path)
            retrying(lambda: [store().fetch(path) for path in files], said=self.reporter.log, stop=lease.stop.is_set)
        self.reporter.start()
        plan = training_plan(self.job, self.devices)
        with cache.using(plan.dataset_folder):  # not evicted from this host's cache while it trains on it
            self.outcome = backends[self.job.backend].train(plan, self.reporter)

    def stopped(self, lease: Lease, exc: Exception) -> None:
        # The run's word on its end is the one line it writes without holding the job (unfenced):
        # whoever looks at the log sees why this attempt went quiet.
        if isinstance(exc, RunLost):
            self.run_lost = (lease.attempt, str(exc))
            self.reporter.log(f"Attempt {lease.attempt} ended on every device: {exc}.", fenced=False)
        else:
            self.reporter.log(f"Attempt {lease.attempt} stopped writing: {exc}", fenced=False)

    def failing(self, lease: Lease, message: str) -> None:
        self.reporter.log(f"Error: {message}")

    def close(self, lease: Lease) -> None:
        self.reporter.close()

    def done(self, lease: Lease) -> None:
        if self.reporter.upload_failure:  # a snapshot that could not be put into the store as the run ended
            _finish(lease, TrainingJob.Status.ERROR, self.reporter.upload_failure, self.reporter.stop_reason)
            return
        _finish(lease, self.outcome, "", self.reporter.stop_reason)

    def failed(self, lease: Lease, message: str) -> None:
        _finish(lease, TrainingJob.Status.ERROR, message, self.reporter.stop_reason)

    def unexpected(self, exc: Exception) -> str:
        return f"Training failed unexpectedly ({type(exc).__name__}: {exc})."

    def describe(self) -> str:
        return f"training job {self.pk}"


def rewind_points(job: TrainingJob) -> TrainingJob:
    """A resumed attempt computes again every point after its snapshot: drop those, and take
    `latest` and `best` from what remains, so that the curve and the summary agree. Called on the
    row as it is queued again (a take-back, a resume), so a live page redraws a clean curve."""
    from jobs.reporting import Summary

    snapshot = job.snapshots.filter(epoch=job.resume_from_epoch).first() if job.resume_from_epoch is not None else None
    step = (snapshot.step or 0) if snapshot is not None else 0
    with transaction.atomic():
        MetricPoint.objects.filter(job_id=job.pk, step__gt=step).delete()
        summary = Summary.of_points(MetricPoint.objects.filter(job_id=job.pk).order_by("step", "pk"))
        epoch = snapshot.epoch if snapshot is not None else 0.0
        fields = {"latest": summary.latest, "best": summary.best, "epoch": epoch,
                  "progress": min(epoch / max(job.epochs, 1), 1.0)}
        TrainingJob.objects.filter(pk=job.pk).update(**fields)
    job.refresh_from_db()
    return job


def _finish(lease: Any, outcome: str, error: str, stop_reason: str = "") -> None:
    fields: dict[str, Any] = {"status": outcome, "error": error, "finished_at": timezone.now(), "eta_seconds": 0}
    if outcome == TrainingJob.Status.ABORTED:
        # A stop the reporter asked for (a sweep's pruner) is not the user's abort.
        fields.update(status=TrainingJob.Status.STOPPED if stop_reason else outcome,
                      stop_reason=stop_reason or "user")
    if outcome == TrainingJob.Status.DONE:
        fields["progress"] = 1.0
    if lease.end(**fields):
        transaction.on_commit(lambda: hooks.job_ended(lease.pk))
    wakeup.notify(lease.pk)


def training_plan(job: TrainingJob, devices: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    """What the backend needs to train `job`, on `devices` (the ones this run holds; () for `device`)."""
    from training.contract import TrainingPlan

    dataset = job.dataset
    from datasets.selectors import dataset_files

    return TrainingPlan(
        job_id=job.pk, output_folder=job.folder, dataset_folder=dataset_files(dataset), task=dataset.task,
        ignore_index=dataset.ignore_index, input_shape=tuple(dataset.image_shape), classes=list(dataset.classes), network_spec=job.network_spec,
        epochs=job.epochs, batch_size=job.batch_size, optimizer=job.optimizer, learning_rate=job.learning_rate,
        momentum=job.momentum, weight_decay=job.weight_decay, lr_policy=job.lr_policy,
        lr_params={"step_size": job.lr_step_size, "gamma": job.lr_gamma, "milestones": job.lr_milestones},
        seed=job.seed, device=job.device, val_interval=job.val_interval, snapshot_interval=job.snapshot_interval,
        resume_from_epoch=job.resume_from_epoch, augmentation=job.augmentation, accumulate=job.accumulate,
        grad_clip=job.grad_clip, label_smoothing=job.label_smoothing, amp=job.amp, pretrained=_plan_pretrained(job),
        devices=tuple(devices), compile=job.compile,
        freeze_epochs=job.freeze_epochs, pretrained_lr_mult=job.pretrained_lr_mult,
        preprocessing={"width": dataset.image_width, "height": dataset.image_height, "channels": dataset.channels,
                       "resize_mode": dataset.resize_mode, "seed": dataset.seed})


def _plan_pretrained(job: TrainingJob) -> dict[str, Any]:
    source = job.pretrained or {}
    if not source.get("weights"):
        return {}
    weights = store().fetch(Path(settings.DATA_DIR) / source["weights"])  # trained or uploaded on another host
    return {"weights": str(weights), "copy": source.get("copy", []),
            "label": source.get("label", "")}
