"""The "Use the result" card on a done job's page: the tools of this app, as the job's backend offers them."""
from __future__ import annotations

from typing import Any

from django import template

from jobs.models import TrainingJob
from jobs.selectors import job_capabilities
from results.compress import METHODS, offered_methods
from results.export import offered_formats

register = template.Library()


@register.inclusion_tag("results/_use_result.html")
def use_result(job: TrainingJob, snapshots: list[float]) -> dict[str, Any]:
    methods = offered_methods(job=job)
    return {"job": job, "snapshots": snapshots, "formats": offered_formats(job=job), "methods": methods,
            "prune": METHODS["prune"] if any(m == "prune" for m, _ in methods) else None,
            "can_inspect": job_capabilities(job=job).inspect}
