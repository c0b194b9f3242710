"""Worker start-up: jobs a dead worker left 'running' are marked interrupted straight away."""
from __future__ import annotations

from typing import Any

from celery.signals import worker_ready


@worker_ready.connect
def reap_on_start(**kwargs: Any) -> None:
    from jobs.services import jobs_reap_stale

    jobs_reap_stale()
