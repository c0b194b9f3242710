from __future__ import annotations

from django.db import models


class Worker(models.Model):
    """A Celery worker as it last described itself: where it runs, what it serves, its devices.

    Each worker writes its own row every few seconds (workers.beacon); the row is the worker's
    word, not a lease: a row that stops changing is a worker that stopped.
    """

    name = models.CharField(max_length=200, unique=True, help_text="Celery's node name, e.g. celery@gpu-host-1.")
    host = models.CharField(max_length=200)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list)
    concurrency = models.PositiveIntegerField(default=1)
    # [{"id": "cuda:0" or "cpu", "name", "memory_total", "memory_used" (bytes), "utilization" (0..1),
    #   "temperature" (°C), "source": "nvml" | "torch" | "host"}], None where the worker cannot tell.
    devices = models.JSONField(default=list)
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["host", "name"]

    def __str__(self) -> str:
        return self.name
