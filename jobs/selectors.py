"""Reads for jobs and networks. Everything a user sees goes through the *_list functions."""
from __future__ import annotations

import operator
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import reduce
from operator import itemgetter
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ObjectDoesNotExist
from django.db.models import (
    BigIntegerField,
    Case,
    Count,
    ExpressionWrapper,
    F,
    FloatField,
    IntegerField,
    Max,
    Min,
    OrderBy,
    Prefetch,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.shortcuts import get_object_or_404
from django.utils import timezone

from jobs.downsample import bucket_count, bucket_index
from jobs.models import LogLine, MetricPoint, Snapshot, TrainingJob

DEFAULT_SUMMARY_INPUT = ((1, 28, 28), 10)


def job_list(*, user: AbstractBaseUser) -> QuerySet[TrainingJob]:
    jobs = TrainingJob.objects.select_related("owner", "dataset")
    return jobs if user.is_staff else jobs.filter(owner=user)


def _best(key: str) -> Cast:
    return Cast(KeyTextTransform(key, "best"), FloatField())


def _latest(key: str) -> Cast:
    return Cast(KeyTextTransform(key, "latest"), FloatField())


# The orderings a job list takes (each also with a leading "-" for descending); best values
# live in the JSON field `best`, read as numbers so that 0.9 sorts above 0.85.
JOB_ORDERINGS: dict[str, Any] = {
    "created_at": F("created_at"),
    "name": F("name"),
    "status": F("status"),
    "best_val_accuracy": _best("val_accuracy"),
    "best_val_loss": _best("val_loss"),
    "best_val_mean_iou": _best("val_mean_iou"),
    "best_val_pixel_accuracy": _best("val_pixel_accuracy"),
    "best_val_map_50": _best("val_map_50"),
    "best_val_map": _best("val_map"),
    "latest_train_loss": _latest("train_loss"),
    "network": F("network"),
    "group": F("group"),
    "epochs": F("epochs"),
    "batch_size": F("batch_size"),
    "learning_rate": F("learning_rate"),
}
JOB_ORDERING_CHOICES = [f"{sign}{name}" for name in JOB_ORDERINGS for sign in ("", "-")]


def job_list_filtered(*, user: AbstractBaseUser, status: str = "", dataset: int | None = None, search: str = "",
                      ordering: str = "", network: str = "", group: str = "", sweep: int | None = None,
                      by_group: bool = False) -> QuerySet[TrainingJob]:
    """The user's jobs for a list page, filtered and ordered, with what each row shows fetched
    in a fixed number of queries (owner, dataset, sweep trial, snapshot epochs) whatever the page's length.

    `by_group` lists each group's jobs together (groups by name, jobs without one last), each
    group in the chosen order.
    """
    jobs = job_list(user=user).select_related("trial").prefetch_related(
        Prefetch("snapshots", queryset=Snapshot.objects.only("id", "job_id", "epoch").order_by("epoch")))
    filters = {"status": status, "dataset_id": dataset, "network": network, "group": group, "trial__sweep_id": sweep}
    jobs = jobs.filter(**{field: value for field, value in filters.items() if value not in ("", None)})
    if search:
        jobs = jobs.filter(name__icontains=search)
    order = _job_order(ordering) if ordering else ()
    if by_group:
        ungrouped_last = Case(When(group="", then=Value(1)), default=Value(0), output_field=IntegerField())
        return jobs.order_by(ungrouped_last, "group", *(order or ("-created_at", "-pk")))
    return jobs.order_by(*order) if order else jobs


def job_trial(*, job: TrainingJob) -> Any:
    """The sweep trial this job runs (sweeps.models.Trial, through the reverse relation), or None."""
    try:
        return job.trial  # type: ignore[attr-defined]
    except ObjectDoesNotExist:
        return None


def _job_order(ordering: str) -> tuple[OrderBy, OrderBy]:
    """Nulls (a job with no validation yet) last either way; the id breaks ties, so pages are stable."""
    descending = ordering.startswith("-")
    key = JOB_ORDERINGS[ordering.removeprefix("-")]
    if descending:
        return key.desc(nulls_last=True), F("pk").desc()
    return key.asc(nulls_last=True), F("pk").asc()


def job_group_counts(*, jobs: QuerySet[TrainingJob]) -> dict[str, int]:
    """How many of these (filtered) jobs each group has, in one query: the table's group headers."""
    rows = jobs.order_by().values_list("group").annotate(count=Count("pk"))
    return dict(rows)  # type: ignore[arg-type]


@dataclass(frozen=True)
class JobFilterChoices:
    networks: list[str]
    groups: list[str]
    sweeps: list[tuple[int, str]]  # (id, name) of the sweeps the jobs belong to


def job_filter_choices(*, user: AbstractBaseUser) -> JobFilterChoices:
    """The networks, groups and sweeps the user's jobs use, for the jobs table's filters (three queries)."""
    jobs = job_list(user=user).order_by()
    networks = jobs.values_list("network", flat=True).distinct().order_by("network")
    groups = jobs.exclude(group="").values_list("group", flat=True).distinct().order_by("group")
    # Through the trial's reverse relation: jobs does not import the sweeps app that builds on it.
    sweeps = (jobs.filter(trial__isnull=False).values_list("trial__sweep_id", "trial__sweep__name").distinct()
              .order_by("-trial__sweep_id"))
    return JobFilterChoices(list(networks), list(groups), list(sweeps))


def job_get(*, user: AbstractBaseUser, pk: int) -> TrainingJob:
    """The job if the user may see it; anyone else's is a 404, never a 403."""
    return get_object_or_404(job_list(user=user), pk=pk)


# What answering one image needs of a job and its dataset is small; the rest (the network spec,
# settings, summaries, counts) is JSON that costs more to decode than the answer takes to compute.
_NOT_FOR_INFERENCE = ("network_spec", "notes", "lr_milestones", "augmentation", "devices", "pretrained",
                      "pretrained_report", "error", "latest", "best", "dataset__error", "dataset__class_pixels",
                      "dataset__split_counts", "dataset__class_counts", "dataset__skipped", "dataset__warnings")


def job_get_to_infer(*, user: AbstractBaseUser, pk: int) -> TrainingJob:
    """job_get for a request that runs one image through the job's model (classify, infer): the
    fields it reads, not the whole row; anyone else's job is a 404."""
    return get_object_or_404(job_list(user=user).defer(*_NOT_FOR_INFERENCE), pk=pk)


def job_metrics(*, job_id: int, after: int = 0, limit: int = 5000) -> list[MetricPoint]:
    """A job's points after the cursor, oldest first. By key: callers have checked access (job_get)."""
    return list(MetricPoint.objects.filter(job_id=job_id, pk__gt=after).order_by("pk")[:limit])


def metric_dict(point: MetricPoint) -> dict[str, Any]:
    return {"id": point.pk, "name": point.name, "split": point.split, "epoch": point.epoch, "step": point.step,
            "value": point.value, "time": point.time}


METRIC_FIELDS = ("id", "name", "split", "epoch", "step", "value", "time")  # metric_dict's keys


@dataclass(frozen=True)
class DownsampledMetrics:
    points: list[dict[str, Any]]
    cursor: int  # the highest id read: a stream that goes on after it misses and repeats nothing
    downsampled: bool


def job_metrics_downsampled(*, job_id: int, max_points: int, after: int = 0) -> DownsampledMetrics:
    """Each curve (split, name) of a job cut to at most max_points in its shape (jobs.downsample), in the database.

    No long curve is read into Python: one query finds the curves and their extent, one reads the
    short ones whole, and two per long curve read its bucket extremes (GROUP BY bucket) and then the
    rows holding them. The query count grows with the number of curves, never with a run's length.

    The cut is kept by this process (`_kept_cuts`) under the curves' extent (count, first and last step,
    highest id): points are only ever added or, on a resume, deleted and added again with new ids,
    so the same extent means the same points. A finished run is cut once per web process.
    """
    points = MetricPoint.objects.filter(job_id=job_id).order_by()
    if after:  # only then: `id > 0` would steer the planner to the cursor index and a scan of every point
        points = points.filter(pk__gt=after)
    curves = list(points.values("split", "name").annotate(n=Count("pk"), first=Min("step"), last=Max("step"),
                                                          top=Max("pk")).order_by("split", "name"))
    key = repr([job_id, after, max_points] + [sorted(curve.items()) for curve in curves])
    cut = _kept_cuts.get(key)
    if cut is None:
        cut = _cut(points, curves, max_points, after)
        _kept_cuts.put(key, cut)
    return cut


class _KeptCuts:
    """The last cuts this process made, by extent, as objects: no pickling (Django's local-memory
    cache pickled each 2,000-point cut, 9 ms a load, most of a warm compare of ten runs)."""

    def __init__(self) -> None:
        self._cuts: OrderedDict[str, DownsampledMetrics] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> DownsampledMetrics | None:
        with self._lock:
            cut = self._cuts.get(key)
            if cut is not None:
                self._cuts.move_to_end(key)
            return cut

    def put(self, key: str, cut: DownsampledMetrics) -> None:
        with self._lock:
            self._cuts[key] = cut
            while len(self._cuts) > settings.WORKBENCH_CURVE_CACHE_ENTRIES:
                self._cuts.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._cuts.clear()


_kept_cuts = _KeptCuts()


def _cut(points: QuerySet[MetricPoint], curves: list[dict[str, Any]], max_points: int, after: int) -> DownsampledMetrics:
    long = [curve for curve in curves if curve["n"] > max_points]
    short = [curve for curve in curves if curve["n"] <= max_points]
    # The short curves whole, and the ends of the long ones.
    ends = [{**curve, "step__in": (curve["first"], curve["last"])} for curve in long]
    kept = list(points.filter(_any_curve(short + ends)).values_list(*METRIC_FIELDS)) if curves else []
    for curve in long:
        kept.extend(_curve_extremes(points.filter(split=curve["split"], name=curve["name"]), curve, max_points))
    kept.sort(key=itemgetter(4, 0))  # by step, as the curves were drawn
    cursor = max([after] + [curve["top"] for curve in curves])
    return DownsampledMetrics([dict(zip(METRIC_FIELDS, p, strict=True)) for p in kept], cursor, bool(long))


def _any_curve(curves: list[dict[str, Any]]) -> Q:
    """Points of any of these curves; a curve may also narrow its steps (`step__in`)."""
    return reduce(operator.or_, (Q(split=c["split"], name=c["name"], **({"step__in": c["step__in"]} if "step__in" in c else {}))
                                 for c in curves), Q(pk__in=[]))


def _curve_extremes(points: QuerySet[MetricPoint], curve: dict[str, Any], max_points: int) -> list[tuple[Any, ...]]:
    """Each bucket's lowest and highest point (the lowest step on a tie); the ends come with the short curves."""
    count, first, last = bucket_count(max_points), curve["first"], curve["last"]
    inner = points.filter(step__gt=first, step__lt=last)
    # bucket_index in SQL: integer division, so the database and Python put each step in the same bucket.
    bucket = ExpressionWrapper(Cast(F("step") - first, BigIntegerField()) * count / (last - first),
                               output_field=BigIntegerField())
    extremes = {row["bucket"]: (row["low"], row["high"])
                for row in inner.annotate(bucket=bucket).values("bucket").annotate(low=Min("value"), high=Max("value"))}
    values = {value for pair in extremes.values() for value in pair}
    kept, taken = [], set()
    for row in inner.filter(value__in=values).order_by("step").values_list(*METRIC_FIELDS):
        step, value = row[4], row[5]
        b = bucket_index(step, first, last, count)
        # A value equal to an extreme of another bucket came along with the IN list: skip it.
        roles = {(b, role) for role, extreme in zip(("low", "high"), extremes.get(b, ()), strict=False)
                 if value == extreme}
        if roles - taken:
            kept.append(row)
            taken |= roles
    return kept


def job_snapshot(*, job: TrainingJob, epoch: float | None = None) -> Snapshot:
    """The chosen snapshot (latest by default), with clear errors when there is none or no such epoch."""
    from jobs.errors import JobInputError, JobStateError

    snapshots = job.snapshots.order_by("-epoch")
    chosen = snapshots.first() if epoch is None else snapshots.filter(epoch=epoch).first()  # one query when found
    if chosen is None and (epoch is None or not snapshots.exists()):
        raise JobStateError("This job has no snapshot yet; it needs at least one finished epoch.")
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
    from training.backends import backends

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
    """The log's last lines, oldest first, in one query."""
    return [line for _, line in job_log_lines(job_id=job.pk, last=lines)]


def job_log_text(job: TrainingJob) -> str:
    """The whole log as text, a line each ("HH:MM:SS message")."""
    rows = LogLine.objects.filter(job_id=job.pk).order_by("pk").values_list("at", "text")
    return "".join(f"{LogLine.render(at, text)}\n" for at, text in rows.iterator())


def job_log_lines(*, job_id: int, last: int, after: int = 0) -> list[tuple[int, str]]:
    """(id, line) of the last `last` lines after the cursor `after`, oldest first, in one query.
    By key: callers have checked access (job_get)."""
    newest = LogLine.objects.filter(job_id=job_id, pk__gt=after).order_by("-pk").values_list("pk", "at", "text")[:last]
    return [(pk, LogLine.render(at, text)) for pk, at, text in reversed(list(newest))]


def job_elapsed_seconds(*, job: TrainingJob) -> float | None:
    if job.started_at is None:
        return None
    end = job.finished_at or timezone.now()
    return max((end - job.started_at).total_seconds(), 0.0)


def job_status_dict(*, job: TrainingJob) -> dict[str, Any]:
    """What the live page needs on every status event."""
    return {"status": job.status, "attempt": job.attempt, "progress": job.progress, "epoch": job.epoch, "eta_seconds": job.eta_seconds,
            "elapsed_seconds": job_elapsed_seconds(job=job), "error": job.error, "latest": job.latest,
            "best": job.best, "snapshots": job_snapshot_epochs(job=job), "stale": job.stale,
            "worker": job.worker}




def job_task_page(*, job: TrainingJob) -> dict[str, Any]:
    """What the job page shows of its dataset's vision task: the live metrics it plots and lists
    (the first one is the "best"), the loss's parts it plots beside the loss, and whether the task's infer page exists in this build."""
    from django.template import TemplateDoesNotExist
    from django.template.loader import get_template

    from training.vision_tasks import vision_task

    task = vision_task(job.dataset.task)
    labels = [m.label[0].lower() + m.label[1:] for m in task.metrics]  # "mean IoU" within a sentence
    metrics = [{"name": m.name, "label": m.label, "in_sentence": label, "key": f"val_{m.name}",
                "id": f"val-{m.name.replace('_', '-')}"} for m, label in zip(task.metrics, labels)]
    try:
        get_template(task.pages["infer"])
        infer_page = True
    except TemplateDoesNotExist:  # a task whose infer page is not built yet: the job page links nowhere
        infer_page = False
    return {"name": task.name, "metrics": metrics, "loss_parts": list(task.loss_parts), "infer_page": infer_page,
            "curves_title": _curves_title(labels)}


def _curves_title(labels: list[str]) -> str:
    """"Loss and accuracy"; "Loss, mean IoU and pixel accuracy"."""
    names = ["Loss", *labels]
    return f"{', '.join(names[:-1])} and {names[-1]}"
