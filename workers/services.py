"""Writes for workers: each worker reports itself."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from workers.models import Worker


@dataclass(frozen=True)
class WorkerReport:
    name: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    started_at: datetime
    devices: list[dict[str, Any]] = field(default_factory=list)


def worker_report(*, report: WorkerReport) -> Worker:
    """Create or update the worker's row; a restarted worker (same name) takes its row over."""
    worker, _ = Worker.objects.update_or_create(
        name=report.name,
        defaults={"host": report.host, "pid": report.pid, "queues": report.queues, "concurrency": report.concurrency,
                  "devices": report.devices, "started_at": report.started_at, "seen_at": timezone.now()})
    return worker


def worker_stopped(*, name: str) -> None:
    """A worker that shuts down cleanly says so: it leaves the list at once, not after the timeout."""
    Worker.objects.filter(name=name).delete()
