from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models

from workbench.leases import Leased


class Dataset(Leased):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        READY = "ready"
        ERROR = "error"

    class ResizeMode(models.TextChoices):
        SQUASH = "squash", "Squash"
        CROP = "crop", "Crop"
        FILL = "fill", "Fill"
        HALF_CROP = "half_crop", "Half crop, half fill"

    class Source(models.TextChoices):
        ARCHIVE = "archive"
        SERVER_PATH = "server_path"
        EXAMPLE = "example"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    error = models.TextField(blank=True)

    # The vision task it poses (training.vision_tasks): what its folder holds and what jobs on it learn.
    task = models.CharField(max_length=32, default="classification")
    source = models.CharField(max_length=16, choices=Source.choices)
    source_name = models.CharField(max_length=1000, help_text="Uploaded file name or server folder.")

    image_width = models.PositiveIntegerField()
    image_height = models.PositiveIntegerField()
    channels = models.PositiveSmallIntegerField()
    resize_mode = models.CharField(max_length=16, choices=ResizeMode.choices)
    val_percent = models.PositiveSmallIntegerField()
    test_percent = models.PositiveSmallIntegerField()
    seed = models.BigIntegerField()
    min_per_class = models.PositiveIntegerField(default=1)
    max_per_class = models.PositiveIntegerField(null=True, blank=True)

    # Segmentation: the mask value that counts as no class, the share of each class's pixels per split
    # ({split: {class: fraction}}, ignore_index left out); segmentation and detection: each class's colour
    # ({class: [r, g, b]}).
    ignore_index = models.PositiveSmallIntegerField(default=255)
    class_pixels = models.JSONField(null=True, blank=True)
    colormap = models.JSONField(null=True, blank=True)

    # Detection: the label format ("" read from the files; once ingested, the format read), the boxes of
    # each class per split ({split: {class: n}}), the boxes the resize left with no area, and the images
    # with no box of any class per split ({split: n}).
    box_format = models.CharField(max_length=8, blank=True, default="")
    box_counts = models.JSONField(null=True, blank=True)
    boxes_dropped = models.PositiveIntegerField(null=True, blank=True)
    images_without_boxes = models.JSONField(null=True, blank=True)

    classes = models.JSONField(default=list)
    split_counts = models.JSONField(default=dict)
    class_counts = models.JSONField(default=dict)
    skipped = models.JSONField(default=dict)
    warnings = models.JSONField(default=list)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at"])]

    def __str__(self) -> str:
        return self.name

    @property
    def folder(self) -> Path:
        return Path(settings.DATA_DIR) / "datasets" / str(self.pk)

    @property
    def image_shape(self) -> list[int]:
        return [self.channels, self.image_height, self.image_width]

    @property
    def class_colours(self) -> list[list[int]]:
        """Each class's [r, g, b] in class order: the colormap's, else the default palette's (a segmentation
        dataset ingested before colours were kept has none)."""
        from datasets.ingest.segmentation import default_colour

        colormap = self.colormap or {}
        return [list(colormap.get(name) or default_colour(i)) for i, name in enumerate(self.classes)]

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.READY, self.Status.ERROR)

    @property
    def total_images(self) -> int:
        return sum(self.split_counts.values()) if self.split_counts else 0
