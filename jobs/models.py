from __future__ import annotations

from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import models
from django.utils import timezone

from workbench.leases import Leased


class TrainingJob(Leased):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        ERROR = "error"
        ABORTED = "aborted"
        INTERRUPTED = "interrupted"
        STOPPED = "stopped"  # ended early by a sweep's early stopping: neither an error nor the user's abort

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="training_jobs")
    name = models.CharField(max_length=200)
    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.PROTECT, related_name="training_jobs")
    network = models.CharField(max_length=100, help_text="Built-in name or custom network name.")
    custom_network = models.ForeignKey("networks.Network", null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="training_jobs")
    # The spec as it was when the job was queued: later edits to a custom network never change a job.
    network_spec = models.JSONField()
    backend = models.CharField(max_length=50, default="torch")
    created_at = models.DateTimeField(auto_now_add=True)
    group = models.CharField(max_length=100, blank=True, db_index=True,
                             help_text="Jobs of one group are listed and compared together.")
    notes = models.TextField(blank=True)

    epochs = models.PositiveIntegerField(default=10)
    batch_size = models.PositiveIntegerField(default=64)
    optimizer = models.CharField(max_length=16, default="sgd")
    learning_rate = models.FloatField(default=0.01)
    momentum = models.FloatField(default=0.9)
    weight_decay = models.FloatField(default=0.0)
    lr_policy = models.CharField(max_length=16, default="fixed")
    lr_step_size = models.FloatField(default=5.0, help_text="Epochs between steps (step policy).")
    lr_gamma = models.FloatField(default=0.1)
    lr_milestones = models.JSONField(default=list, blank=True)
    seed = models.BigIntegerField(default=0)
    device = models.CharField(max_length=16, default="auto")
    val_interval = models.FloatField(default=1.0, help_text="Validate every this many epochs.")
    snapshot_interval = models.FloatField(default=1.0, help_text="Snapshot every this many epochs.")
    resume_from_epoch = models.FloatField(null=True, blank=True)
    # training.augmentation's keys as the user gave them, normalised; `mean` among them.
    augmentation = models.JSONField(default=dict, blank=True)
    accumulate = models.PositiveIntegerField(default=1, help_text="Batches per optimizer step.")
    grad_clip = models.FloatField(default=0.0, help_text="Largest gradient norm; 0 is off.")
    label_smoothing = models.FloatField(default=0.0)
    amp = models.CharField(max_length=8, default="off", help_text="Mixed precision: off, bf16 or fp16.")
    # One job on several devices (DDP), one process each: "cuda:N", "cuda" (next free) or "cpu"; [] uses `device`.
    devices = models.JSONField(default=list, blank=True)
    compile = models.BooleanField(default=False, help_text="torch.compile the network (eager if that fails).")
    # What the job starts from: {"job": id, "epoch": e} or {"model": id}, resolved by pretrained.services
    # with the weights file (relative to the data folder) and the names to copy; {} for a fresh start.
    pretrained = models.JSONField(default=dict, blank=True)
    pretrained_report = models.JSONField(default=dict, blank=True)
    # Epochs the copied weights stay fixed: 0 none, -1 the whole run.
    freeze_epochs = models.IntegerField(default=0)
    pretrained_lr_mult = models.FloatField(default=1.0, help_text="Learning-rate multiplier of the copied weights.")

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    epoch = models.FloatField(default=0.0)
    eta_seconds = models.FloatField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    abort_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    # Why a job ended before its last epoch: "" (it did not), user, early_stopping, diverged, ...
    stop_reason = models.CharField(max_length=32, blank=True)
    device_used = models.CharField(max_length=255, blank=True, help_text="Where it trains: one device, or several.")
    latest = models.JSONField(default=dict)
    best = models.JSONField(default=dict)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at"]), models.Index(fields=["status"])]

    def __str__(self) -> str:
        return self.name

    @property
    def folder(self) -> Path:
        return Path(settings.DATA_DIR) / "jobs" / str(self.pk)

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE


class MetricPoint(models.Model):
    """One reported value. The id is the stream cursor; (job, split, name, step) makes reports idempotent."""

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="metrics")
    split = models.CharField(max_length=8)
    name = models.CharField(max_length=32)
    epoch = models.FloatField()
    step = models.PositiveIntegerField()
    value = models.FloatField()
    time = models.FloatField(help_text="When the worker reported it, in epoch seconds.")

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["job", "split", "name", "step"], name="metric_point_unique")]
        # The stream's read, `WHERE job_id = ? AND id > ? ORDER BY id`: with only the job's own
        # index the database sorts all of a long run's points on every poll.
        indexes = [models.Index(fields=["job", "id"], name="metric_point_job_cursor")]


class Snapshot(models.Model):
    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="snapshots")
    epoch = models.FloatField()
    step = models.PositiveIntegerField(null=True, blank=True, help_text="The training step it was taken after.")
    path = models.CharField(max_length=500, help_text="Weights file, relative to the job folder.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["epoch"]
        constraints = [models.UniqueConstraint(fields=["job", "epoch"], name="snapshot_unique_epoch")]


class LogLine(models.Model):
    """One line of a job's log. The log lives here, not in the job's folder, so a web on another host
    reads it; the id orders the lines and is a live reader's cursor."""

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="log_lines")
    at = models.DateTimeField(help_text="When it was logged (the worker's clock).")
    text = models.TextField()

    class Meta:
        ordering = ["id"]
        # The tail and the stream's read, `WHERE job_id = ? [AND id > ?] ORDER BY id [DESC]`.
        indexes = [models.Index(fields=["job", "id"], name="log_line_job_cursor")]

    def __str__(self) -> str:
        return self.render(self.at, self.text)

    @staticmethod
    def render(at: datetime, text: str) -> str:
        """The line as readers show it: "HH:MM:SS message", in TIME_ZONE."""
        return f"{timezone.localtime(at):%H:%M:%S} {text}"
