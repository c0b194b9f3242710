"""Reads for jobs and networks. Everything a user sees goes through the *_list functions."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import F, FloatField, OrderBy, Prefetch, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone

from datasets.models import Dataset
from jobs.downsample import downsample_curve
from jobs.models import MetricPoint, Network, Snapshot, TrainingJob
from jobs.networks.builtin import BUILTIN_NETWORKS, builtin_spec
from jobs.networks.spec import NetworkSummary, summarize

LOG_TAIL_BYTES = 16 * 1024
DEFAULT_SUMMARY_INPUT = ((1, 28, 28), 10)


def job_list(*, user: AbstractBaseUser) -> QuerySet[TrainingJob]:
    jobs = TrainingJob.objects.select_related("owner", "dataset")
    return jobs if user.is_staff else jobs.filter(owner=user)


def _best(key: str) -> Cast:
    return Cast(KeyTextTransform(key, "best"), FloatField())


# The orderings a job list takes (each also with a leading "-" for descending); best values
# live in the JSON field `best`, read as numbers so that 0.9 sorts above 0.85.
JOB_ORDERINGS: dict[str, Any] = {
    "created_at": F("created_at"),
    "name": F("name"),
    "status": F("status"),
    "best_val_accuracy": _best("val_accuracy"),
    "best_val_loss": _best("val_loss"),
}
JOB_ORDERING_CHOICES = [f"{sign}{name}" for name in JOB_ORDERINGS for sign in ("", "-")]


def job_list_filtered(*, user: AbstractBaseUser, status: str = "", dataset: int | None = None, search: str = "",
                      ordering: str = "") -> QuerySet[TrainingJob]:
    """The user's jobs for a list page, filtered and ordered, with what each row shows fetched
    in a fixed number of queries (owner, dataset, snapshot epochs) whatever the page's length."""
    jobs = job_list(user=user).prefetch_related(
        Prefetch("snapshots", queryset=Snapshot.objects.only("id", "job_id", "epoch").order_by("epoch")))
    if status:
        jobs = jobs.filter(status=status)
    if dataset is not None:
        jobs = jobs.filter(dataset_id=dataset)
    if search:
        jobs = jobs.filter(name__icontains=search)
    return jobs.order_by(*_job_order(ordering)) if ordering else jobs


def _job_order(ordering: str) -> tuple[OrderBy, OrderBy]:
    """Nulls (a job with no validation yet) last either way; the id breaks ties, so pages are stable."""
    descending = ordering.startswith("-")
    key = JOB_ORDERINGS[ordering.removeprefix("-")]
    if descending:
        return key.desc(nulls_last=True), F("pk").desc()
    return key.asc(nulls_last=True), F("pk").asc()


def job_get(*, user: AbstractBaseUser, pk: int) -> TrainingJob:
    """The job if the user may see it; anyone else's is a 404, never a 403."""
    return get_object_or_404(job_list(user=user), pk=pk)


def job_metrics(*, job_id: int, after: int = 0, limit: int = 5000) -> list[MetricPoint]:
    """A job's points after the cursor, oldest first. By key: callers have checked access (job_get)."""
    return list(MetricPoint.objects.filter(job_id=job_id, pk__gt=after).order_by("pk")[:limit])


def metric_dict(point: MetricPoint) -> dict[str, Any]:
    return {"id": point.pk, "name": point.name, "split": point.split, "epoch": point.epoch, "step": point.step,
            "value": point.value, "time": point.time}


_METRIC_FIELDS = ("id", "name", "split", "epoch", "step", "value", "time")  # metric_dict's keys


@dataclass(frozen=True)
class DownsampledMetrics:
    points: list[dict[str, Any]]
    cursor: int  # the highest id read: a stream that goes on after it misses and repeats nothing
    downsampled: bool


def job_metrics_downsampled(*, job_id: int, max_points: int, after: int = 0) -> DownsampledMetrics:
    """Each curve (split, name) of a job cut to at most max_points in its shape (jobs.downsample).

    One query whatever the run's length, read as tuples a curve at a time in the unique
    constraint's order (job, split, name, step), so only one curve is held in full at once.
    """
    rows = (MetricPoint.objects.filter(job_id=job_id, pk__gt=after).order_by("split", "name", "step")
            .values_list(*_METRIC_FIELDS).iterator(chunk_size=5000))
    kept: list[tuple[Any, ...]] = []
    cursor, cut = after, False
    for _, curve in groupby(rows, key=itemgetter(2, 1)):
        points = list(curve)
        cursor = max(cursor, max(p[0] for p in points))
        short = downsample_curve(points, max_points, step=itemgetter(4), value=itemgetter(5))
        cut = cut or len(short) < len(points)
        kept.extend(short)
    kept.sort(key=itemgetter(4, 0))  # by step, as the curves were drawn
    return DownsampledMetrics([dict(zip(_METRIC_FIELDS, p, strict=True)) for p in kept], cursor, cut)


def job_snapshot(*, job: TrainingJob, epoch: float | None = None) -> Snapshot:
    """The chosen snapshot (latest by default), with clear errors when there is none or no such epoch."""
    from jobs.services import JobInputError, JobStateError

    snapshots = job.snapshots.order_by("-epoch")
    if not snapshots.exists():
        raise JobStateError("This job has no snapshot yet; it needs at least one finished epoch.")
    if epoch is None:
        return snapshots.first()  # type: ignore[return-value]
    chosen = snapshots.filter(epoch=epoch).first()
    if chosen is None:
        epochs = ", ".join(f"{s.epoch:g}" for s in snapshots)
        raise JobInputError(f"No snapshot at epoch {epoch:g}; snapshots exist at epochs {epochs}.", "epoch")
    return chosen


@dataclass(frozen=True)
class Capabilities:
    """What a job's backend can do, read from its class's flags (no framework is imported)."""

    resume: bool
    inspect: bool
    export_formats: tuple[str, ...]
    compress_methods: tuple[str, ...]
    augmentation: bool = False


def job_capabilities(*, job: TrainingJob) -> Capabilities:
    from jobs.backends import backends

    backend = backends.backend_class(job.backend)
    return Capabilities(resume=backend.supports_resume, inspect=backend.supports_inspect,
                        export_formats=tuple(backend.export_formats), compress_methods=tuple(backend.compress_methods),
                        augmentation=backend.supports_augmentation)


def job_snapshot_epochs(*, job: TrainingJob) -> list[float]:
    """Oldest first; read from the list's prefetch (job_list_filtered) when the job has one."""
    if "snapshots" in getattr(job, "_prefetched_objects_cache", {}):
        return [snapshot.epoch for snapshot in job.snapshots.all()]
    return list(job.snapshots.order_by("epoch").values_list("epoch", flat=True))


def job_log_tail(*, job: TrainingJob, lines: int = 40) -> list[str]:
    path = job.folder / "log.txt"
    if not path.exists():
        return []
    with path.open("rb") as handle:
        handle.seek(max(path.stat().st_size - LOG_TAIL_BYTES, 0))
        return handle.read().decode(errors="replace").splitlines()[-lines:]


def job_elapsed_seconds(*, job: TrainingJob) -> float | None:
    if job.started_at is None:
        return None
    end = job.finished_at or timezone.now()
    return max((end - job.started_at).total_seconds(), 0.0)


def job_status_dict(*, job: TrainingJob) -> dict[str, Any]:
    """What the live page needs on every status event."""
    return {"status": job.status, "attempt": job.attempt, "progress": job.progress, "epoch": job.epoch, "eta_seconds": job.eta_seconds,
            "elapsed_seconds": job_elapsed_seconds(job=job), "error": job.error, "latest": job.latest,
            "best": job.best, "snapshots": job_snapshot_epochs(job=job)}


# --- networks -------------------------------------------------------------------------------

@dataclass(frozen=True)
class NetworkEntry:
    id: str
    name: str
    builtin: bool
    title: str
    network: Network | None = None


def network_list(*, user: AbstractBaseUser) -> list[NetworkEntry]:
    builtins = [NetworkEntry(name, name, True, title) for name, title in BUILTIN_NETWORKS.items()]
    custom = Network.objects.all() if user.is_staff else Network.objects.filter(owner=user)
    return builtins + [NetworkEntry(str(n.pk), n.name, False, n.description or n.name, n) for n in custom]


def network_get(*, user: AbstractBaseUser, key: str) -> NetworkEntry:
    for entry in network_list(user=user):
        if key in (entry.id, entry.name):
            return entry
    raise Http404("No such network.")


def network_summary(*, entry: NetworkEntry, dataset: Dataset | None) -> tuple[NetworkSummary, tuple[int, int, int], int]:
    """The summary for a dataset's input (or 1x28x28 with 10 classes); SpecError if it does not fit."""
    shape, classes = DEFAULT_SUMMARY_INPUT
    if dataset is not None and dataset.status == Dataset.Status.READY:
        shape, classes = tuple(dataset.image_shape), len(dataset.classes)  # type: ignore[assignment]
    spec = builtin_spec(entry.name, shape, classes) if entry.builtin else entry.network.spec  # type: ignore[union-attr]
    return summarize(spec, shape, classes), shape, classes
