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
    # A serving worker's capacity (serving.work.serving_state): {"device", "models": [{"name", "backend",
    # "bytes", "hits", "loaded_at"}], "bytes", "capacity_bytes", "batches", "requests", "largest_batch"};
    # None for a worker that does not consume the serving queue.
    serving = models.JSONField(null=True, blank=True)
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["host", "name"]

    def __str__(self) -> str:
        return self.name


class DeviceLease(models.Model):
    """One device of one host held by one training job (workers.devices): jobs never share a GPU.

    Taken before the job's row is claimed and given back when its run ends. A lease whose job is no
    longer running under the process that took it (a killed worker's, once its job was taken back)
    is stale, and the next job that needs the device removes it.
    """

    host = models.CharField(max_length=200)
    device = models.CharField(max_length=32, help_text='"cuda:N", or "cpu#K" for a CPU slot.')
    job = models.ForeignKey("jobs.TrainingJob", on_delete=models.CASCADE, related_name="device_leases")
    owner = models.CharField(max_length=200, help_text="The process that took it (workbench.leases.this_process).")
    acquired_at = models.DateTimeField()

    class Meta:
        ordering = ["host", "device"]
        constraints = [models.UniqueConstraint(fields=["host", "device"], name="device_lease_unique")]

    def __str__(self) -> str:
        return f"{self.device} on {self.host}: job {self.job_id}"
