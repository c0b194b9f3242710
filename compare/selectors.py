"""Reads for comparing training jobs: their settings, best values and curves, side by side.

No models of its own: a comparison is a view over jobs (jobs.models) and their metric points.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.urls import reverse

from jobs.models import TrainingJob
from jobs.selectors import job_list, job_metrics_downsampled
from jobs.services import job_settings
from training.vision_tasks import vision_task

MAX_JOBS = 20
DEFAULT_MAX_POINTS = 2000
# The page's charts are about 500 pixels wide: two points a pixel keep every spike (min/max) and
# halve what 10 long runs cost to read, send and draw.
PAGE_MAX_POINTS = 1000
AXES = ("epoch", "step", "time")
CURVES = ("train_loss", "val_loss", "val_accuracy", "lr")  # a classification job's; each job's: job_curves
# Shown in the page's table of differences only when the jobs differ in them; the name labels the row.
NOT_COMPARED = ("name", "notes")
# One colour per job, by its place in the comparison, held across every chart and the table
# (Plotly's own default sequence, so the page looks like the job page's charts).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


class CompareInputError(Exception):
    """A bad comparison request, with the query parameter it belongs to."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class JobsNotFound(Exception):
    """Ids the user cannot see: another user's job and a job that does not exist read the same."""

    def __init__(self, ids: list[int]) -> None:
        super().__init__(f"No job {', '.join(map(str, ids))}." if len(ids) == 1
                         else f"No jobs {', '.join(map(str, ids))}.")
        self.ids = ids


def parse_job_ids(raw: str) -> list[int]:
    """`"3,1,2"` → `[3, 1, 2]`, in the given order, duplicates dropped, at most MAX_JOBS."""
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    if not parts or not all(part.isdigit() for part in parts):
        raise CompareInputError(f"Give job ids as numbers separated by commas, e.g. 1,2,3 (got '{raw[:50]}').",
                                "jobs")
    ids = list(dict.fromkeys(int(part) for part in parts))
    if len(ids) > MAX_JOBS:
        raise CompareInputError(f"Compare at most {MAX_JOBS} jobs at once ({len(ids)} given).", "jobs")
    return ids


def compare_job_ids(*, user: AbstractBaseUser, jobs: str = "", group: str = "") -> list[int]:
    """The ids a request names: `jobs=1,2,3`, or every job of a `group` (oldest first)."""
    if jobs:
        return parse_job_ids(jobs)
    if not group:
        raise CompareInputError("Name the jobs to compare: jobs=1,2,3 or group=<name>.", "jobs")
    ids = list(job_list(user=user).filter(group=group).order_by("created_at", "pk").values_list("pk", flat=True))
    if not ids:
        raise CompareInputError(f"You have no jobs in the group '{group}'.", "group")
    if len(ids) > MAX_JOBS:
        raise CompareInputError(f"The group '{group}' has {len(ids)} jobs; compare at most {MAX_JOBS} at once "
                                "(pick them in the jobs table).", "group")
    return ids


def compare_jobs(*, user: AbstractBaseUser, ids: list[int]) -> list[TrainingJob]:
    """The jobs in the order asked, in one query; JobsNotFound names any the user may not see."""
    found = job_list(user=user).in_bulk(ids)
    missing = [pk for pk in ids if pk not in found]
    if missing:
        raise JobsNotFound(missing)
    return [found[pk] for pk in ids]


def job_compare_settings(*, job: TrainingJob) -> dict[str, Any]:
    """Every setting the job was created with, as the job form and `POST jobs/` name them."""
    return {"dataset": job.dataset_id, "network": job.network, **asdict(job_settings(job=job))}


@dataclass(frozen=True)
class Series:
    curves: dict[str, list[list[float]]]  # curve → [[x, value], ...] in step order
    cursor: int  # the job's highest point id: its event stream goes on after it
    time_origin: float | None  # when the job's first point was reported (x=time counts from it)
    downsampled: bool


def curve_key(split: str, name: str) -> str:
    """A point's curve, as the compare payload names it: train_loss, val_loss, val_accuracy, lr, ..."""
    return "lr" if name == "lr" else f"{split}_{name}"


def job_curves(job: TrainingJob) -> tuple[str, ...]:
    """The curves a job has, whether or not it reported them yet: the losses, its task's val metrics, lr."""
    return ("train_loss", "val_loss", *(f"val_{m.name}" for m in vision_task(job.dataset.task).metrics), "lr")


@dataclass(frozen=True)
class Chart:
    key: str  # a curve (curve_key)
    title: str  # the figure's caption
    axis: str  # the y axis's title
    fraction: bool = False  # a value from 0 to 1, shown as a percentage


def compare_charts(*, jobs: list[TrainingJob]) -> list[Chart]:
    """The page's charts: the two losses, every val metric of the jobs' tasks (each once), the learning rate."""
    metrics = {f"val_{m.name}": m for job in jobs for m in vision_task(job.dataset.task).metrics}
    return [Chart("train_loss", "Train loss", "Loss"), Chart("val_loss", "Val loss", "Loss"),
            *(Chart(key, f"Val {m.label[0].lower()}{m.label[1:]}", m.label, True) for key, m in metrics.items()),
            Chart("lr", "Learning rate", "Learning rate")]


def best_keys(charts: list[Chart]) -> list[str]:
    """The best values the page's table lists: each val metric charted, then the val loss."""
    return [chart.key for chart in charts if chart.fraction] + ["val_loss"]


def best_cells(job: TrainingJob, keys: list[str]) -> list[dict[str, Any]]:
    return [{"key": key, "value": job.best.get(key), "epoch": job.best.get(f"{key}_epoch")} for key in keys]


def job_series(*, job_id: int, x: str, max_points: int, names: tuple[str, ...] = CURVES) -> Series:
    """One job's curves as [x, value] pairs, each cut to max_points keeping its shape; a long run's
    cut is kept by job_metrics_downsampled, so comparing ten finished runs again reads no points."""
    cut = job_metrics_downsampled(job_id=job_id, max_points=max_points)
    origin = min((p["time"] for p in cut.points), default=None)
    curves: dict[str, list[list[float]]] = defaultdict(list)
    for point in cut.points:
        curves[curve_key(point["split"], point["name"])].append([_x(point, x, origin), point["value"]])
    for name in names:
        curves.setdefault(name, [])
    return Series(dict(curves), cut.cursor, origin, cut.downsampled)


def _x(point: dict[str, Any], axis: str, origin: float | None) -> float:
    if axis == "time":
        return round(point["time"] - (origin or 0.0), 3)
    return point[axis]


def compare_payload(*, jobs: list[TrainingJob], x: str = "epoch",
                    max_points: int = DEFAULT_MAX_POINTS) -> dict[str, Any]:
    """`GET compare/`'s answer: per job its settings, best values and aligned, downsampled curves."""
    return {"x": x, "jobs": [_job_entry(job, x, max_points) for job in jobs]}


def _job_entry(job: TrainingJob, x: str, max_points: int) -> dict[str, Any]:
    series = job_series(job_id=job.pk, x=x, max_points=max_points, names=job_curves(job))
    return {"id": job.pk, "name": job.name, "status": job.status, "attempt": job.attempt, "settings": job_compare_settings(job=job),
            "best": job.best, "series": series.curves, "cursor": series.cursor, "time_origin": series.time_origin,
            "downsampled": series.downsampled, "url": reverse("job-detail", args=[job.pk]),
            "events": reverse("api-job-events", args=[job.pk])}


@dataclass(frozen=True)
class SettingsTable:
    fields: list[str]  # the settings in which the jobs differ

    @property
    def labels(self) -> list[str]:
        return [setting_label(field) for field in self.fields]
    rows: list[tuple[TrainingJob, str, list[Any]]]  # each job with its colour and its values of those fields


def compare_settings_table(*, jobs: list[TrainingJob]) -> SettingsTable:
    """Only the settings that differ between the jobs (all of them for a single job)."""
    settings_ = [job_compare_settings(job=job) for job in jobs]
    names = [name for name in settings_[0] if name not in NOT_COMPARED] if settings_ else []
    differing = [name for name in names if len({repr(s[name]) for s in settings_}) > 1 or len(jobs) == 1]
    rows = [(job, job_colour(i), [_shown(job, name, s[name]) for name in differing])
            for i, (job, s) in enumerate(zip(jobs, settings_, strict=True))]
    return SettingsTable(differing, rows)


def setting_label(field: str) -> str:
    """`lr_step_size` → "LR step size", `batch_size` → "Batch size"."""
    words = field.split("_")
    return " ".join(["LR" if words[0] == "lr" else words[0].capitalize(), *words[1:]])


def job_colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _shown(job: TrainingJob, name: str, value: Any) -> Any:
    if name == "dataset":
        return job.dataset.name
    if isinstance(value, list):
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) or "–"
    return value
