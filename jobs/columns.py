"""The jobs table's optional columns: settings and best or latest metrics, chosen by the user.

Each column is written once here: its label, how a job's value reads, the ordering that sorts by
it (jobs.selectors.JOB_ORDERINGS) and whether it shows before the user has chosen. Every value
comes from the job's own row, so a column never costs a query.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobs.models import TrainingJob


def _number(value: Any, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _metric(source: str, key: str, fmt: str) -> Callable[[TrainingJob], str]:
    return lambda job: _number(getattr(job, source).get(key), fmt)


def _setting(name: str) -> Callable[[TrainingJob], str]:
    return lambda job: str(getattr(job, name))


@dataclass(frozen=True)
class JobColumn:
    key: str
    label: str
    value: Callable[[TrainingJob], str]
    ordering: str = ""  # a JOB_ORDERINGS key ("" when the column does not sort)
    first: str = ""  # "-" when its first click sorts descending (best accuracy first)
    default: bool = False


JOB_COLUMNS = [
    JobColumn("network", "Network", _setting("network"), "network", default=True),
    JobColumn("dataset", "Dataset", lambda job: job.dataset.name, default=True),
    JobColumn("group", "Group", lambda job: job.group or "–", "group", default=True),
    JobColumn("epochs", "Epochs", _setting("epochs"), "epochs"),
    JobColumn("batch_size", "Batch size", _setting("batch_size"), "batch_size"),
    JobColumn("optimizer", "Optimizer", _setting("optimizer")),
    JobColumn("learning_rate", "Learning rate", lambda job: format(job.learning_rate, "g"), "learning_rate"),
    JobColumn("lr_policy", "LR policy", _setting("lr_policy")),
    JobColumn("seed", "Seed", _setting("seed")),
    # Where it ran (several devices for a job on several), else what it asked for.
    JobColumn("device", "Device", lambda job: job.device_used or ", ".join(job.devices) or job.device),
    JobColumn("amp", "Precision", lambda job: {"off": "fp32"}.get(job.amp, job.amp) + (", compiled" if job.compile else "")),
    JobColumn("best_val_accuracy", "Best val accuracy", _metric("best", "val_accuracy", ".2%"), "best_val_accuracy",
              "-", default=True),
    JobColumn("best_val_loss", "Best val loss", _metric("best", "val_loss", ".4f"), "best_val_loss"),
    JobColumn("latest_train_loss", "Latest train loss", _metric("latest", "train_loss", ".4f"), "latest_train_loss"),
    JobColumn("latest_val_accuracy", "Latest val accuracy", _metric("latest", "val_accuracy", ".2%")),
    # Segmentation's metrics (training.vision_tasks.segmentation); "–" for the jobs of other tasks.
    JobColumn("best_val_mean_iou", "Best val mean IoU", _metric("best", "val_mean_iou", ".2%"), "best_val_mean_iou", "-"),
    JobColumn("best_val_pixel_accuracy", "Best val pixel accuracy", _metric("best", "val_pixel_accuracy", ".2%"),
              "best_val_pixel_accuracy", "-"),
    # Detection's (training.vision_tasks.detection).
    JobColumn("best_val_map_50", "Best val mAP@0.5", _metric("best", "val_map_50", ".3f"), "best_val_map_50", "-"),
    JobColumn("best_val_map", "Best val mAP@0.5:0.95", _metric("best", "val_map", ".3f"), "best_val_map", "-"),
]
DEFAULT_COLUMNS = [column.key for column in JOB_COLUMNS if column.default]


def job_cells(job: TrainingJob) -> list[tuple[JobColumn, str]]:
    return [(column, column.value(job)) for column in JOB_COLUMNS]
