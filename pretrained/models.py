from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models


class PretrainedModel(models.Model):
    """Weights a job can start from, with what they were trained for: network, classes, input shape."""

    class Source(models.TextChoices):
        UPLOAD = "upload"
        JOB = "job"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="pretrained_models")
    name = models.CharField(max_length=200)
    network = models.CharField(max_length=100, blank=True, help_text='A built-in network name, or "" for a spec.')
    network_spec = models.JSONField()
    classes = models.JSONField(default=list)
    input_shape = models.JSONField(help_text="[C, H, W]")
    # The mean mode and resize the weights expect; `mean_file` is beside the weights when there is one.
    preprocessing = models.JSONField(default=dict, blank=True)
    # {name: shape}, read from the safetensors header (never by loading the file).
    tensors = models.JSONField(default=dict)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.UPLOAD)
    source_job = models.ForeignKey("jobs.TrainingJob", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    source_epoch = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name

    @property
    def folder(self) -> Path:
        return Path(settings.DATA_DIR) / "pretrained" / str(self.pk)

    @property
    def weights_path(self) -> Path:
        return self.folder / "weights.safetensors"
