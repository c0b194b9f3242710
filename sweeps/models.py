from __future__ import annotations

from django.conf import settings
from django.db import models


class Sweep(models.Model):
    """Many training jobs on one dataset, their settings chosen by an Optuna study (grid, random, TPE)."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        ERROR = "error"
        ABORTED = "aborted"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sweeps")
    name = models.CharField(max_length=150)
    # A dataset can be deleted only once no job uses it (its trials' jobs protect it); a sweep left
    # with no job goes with it rather than turn that delete into an error.
    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="sweeps")
    network = models.CharField(max_length=100)
    base = models.JSONField(default=dict, blank=True, help_text="Job settings every trial starts from.")
    grid = models.JSONField(null=True, blank=True, help_text="{field: [value, ...]}: every combination once.")
    search = models.JSONField(null=True, blank=True, help_text="{method, trials, seed, space}.")
    max_concurrent = models.PositiveIntegerField(default=2)
    metric = models.CharField(max_length=32, default="val_accuracy")  # val_loss or a task's val_<metric>
    mode = models.CharField(max_length=3, default="max")
    early_stopping = models.JSONField(null=True, blank=True, help_text="{method: asha, grace_epochs, "
                                                                       "reduction_factor} or null.")
    trials_total = models.PositiveIntegerField(help_text="The trial budget: the grid's size or search's trials.")
    study_name = models.CharField(max_length=200, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Who advances the sweep now, and until when (sweeps.services.sweep_advance): a claim, not a
    # transaction, because Optuna writes through a connection of its own while it is held.
    advancing_until = models.DateTimeField(null=True, blank=True)
    advance_wanted = models.PositiveIntegerField(default=0, help_text="Bumped by every advance asked.")
    advanced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at"]), models.Index(fields=["status"])]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE


class Trial(models.Model):
    """One trial of a sweep: an Optuna trial number and the training job that runs its settings."""

    sweep = models.ForeignKey(Sweep, on_delete=models.CASCADE, related_name="trials")
    # The link lives here, not on the job: a job knows nothing of sweeps (job.trial reads it back).
    job = models.OneToOneField("jobs.TrainingJob", on_delete=models.CASCADE, related_name="trial")
    number = models.PositiveIntegerField(help_text="The Optuna trial number.")
    params = models.JSONField(default=dict)
    told = models.BooleanField(default=False, help_text="Its result was told to the study.")

    class Meta:
        ordering = ["number"]
        constraints = [models.UniqueConstraint(fields=["sweep", "number"], name="trial_number_unique_per_sweep")]

    def __str__(self) -> str:
        return f"{self.sweep} #{self.number + 1}"
