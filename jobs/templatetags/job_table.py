"""The jobs table's optional columns in templates (jobs.columns)."""
from __future__ import annotations

from django import template

from jobs.columns import JOB_COLUMNS, JobColumn, job_cells
from jobs.models import TrainingJob

register = template.Library()


@register.simple_tag
def job_columns(which: str = "all") -> list[JobColumn]:
    """Every optional column ("all", the jobs page: the user picks) or only the default ones (the dashboard)."""
    return [c for c in JOB_COLUMNS if which == "all" or c.default]


@register.filter
def cells(job: TrainingJob, columns: list[JobColumn]) -> list[tuple[JobColumn, str]]:
    keys = {column.key for column in columns}
    return [(column, value) for column, value in job_cells(job) if column.key in keys]


@register.filter
def count_of(counts: dict[str, int], group: str) -> int:
    """A group's number of jobs (jobs.selectors.job_group_counts), for its header row."""
    return counts.get(group, 0)
