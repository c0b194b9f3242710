"""The jobs table's optional columns in templates (jobs.columns)."""
from __future__ import annotations

from django import template
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import mark_safe

from jobs.columns import JOB_COLUMNS, JobColumn, job_cells
from jobs.models import TrainingJob

register = template.Library()


@register.simple_tag
def job_columns(which: str = "all") -> list[JobColumn]:
    """Every optional column ("all", the jobs page: the user picks) or only the default ones (the dashboard)."""
    return [c for c in JOB_COLUMNS if which == "all" or c.default]


@register.simple_tag
def job_cells_html(job: TrainingJob, columns: list[JobColumn]) -> str:
    """The row's optional cells. Written in Python, not a template loop or format_html per cell:
    14 cells on 50 rows were a third of the Jobs page's time."""
    keys = {column.key for column in columns}
    cells = []
    for column, value in job_cells(job):
        if column.key not in keys:
            continue
        if column.key == "dataset":
            value = f'<a href="{escape(reverse("dataset-detail", args=[job.dataset_id]))}">{escape(value)}</a>'
        else:
            value = escape(value)
        cells.append(f'<td data-col="{column.key}">{value}</td>')
    return mark_safe("".join(cells))  # noqa: S308  (every value above is escaped; the keys are ours)


@register.filter
def count_of(counts: dict[str, int], group: str) -> int:
    """A group's number of jobs (jobs.selectors.job_group_counts), for its header row."""
    return counts.get(group, 0)
