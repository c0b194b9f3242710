"""Everything computed from a job's snapshot is stored, so its page opens instantly the next time."""
from __future__ import annotations

from pathlib import Path

from django.db import models

from workbench.leases import Leased


class Status(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    ERROR = "error"


class _Work(Leased):
    """A piece of background work on one snapshot of one job, with progress and a stored result."""

    job = models.ForeignKey("jobs.TrainingJob", on_delete=models.CASCADE, related_name="%(class)ss")
    snapshot = models.ForeignKey("jobs.Snapshot", on_delete=models.CASCADE, related_name="%(class)ss")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta(Leased.Meta):
        abstract = True
        ordering = ["-created_at", "-id"]

    @property
    def is_finished(self) -> bool:
        return self.status in (Status.DONE, Status.ERROR)


class Evaluation(_Work):
    """The vision task's report on a split (its `task` says which): classification top-1/top-5, per-class
    precision/recall/F1, confusion, confident mistakes, top-N per class; segmentation pixel accuracy, mean
    IoU, per-class IoU/precision/recall, pixel confusion, the worst images with their predicted masks."""

    split = models.CharField(max_length=8)

    class Meta(_Work.Meta):
        constraints = [models.UniqueConstraint(fields=["snapshot", "split"], name="evaluation_unique_split")]


class BatchClassification(_Work):
    """Classify many: a zip of images or a list of server paths, optionally with true labels."""

    name = models.CharField(max_length=300)
    source = models.CharField(max_length=16)  # "archive" or "list"
    has_labels = models.BooleanField(default=False)

    @property
    def folder(self) -> Path:
        return self.job.folder / "batches" / str(self.pk)


class Export(_Work):
    """A downloadable model: archive (safetensors + spec + README), TorchScript or ONNX."""

    format = models.CharField(max_length=16)
    path = models.CharField(max_length=500, blank=True, help_text="Relative to the job folder.")
    size_bytes = models.BigIntegerField(null=True, blank=True)

    class Meta(_Work.Meta):
        constraints = [models.UniqueConstraint(fields=["snapshot", "format"], name="export_unique_format")]


class Compression(_Work):
    """A smaller model: magnitude pruning with a short fine-tune, or int8 quantization."""

    method = models.CharField(max_length=24)
    params = models.JSONField(default=dict, blank=True)
    path = models.CharField(max_length=500, blank=True)
