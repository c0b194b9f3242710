from __future__ import annotations

from django.conf import settings
from django.db import models


class Network(models.Model):
    """A custom network: a declarative layer spec, validated before any job uses it."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="networks")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    spec = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # Its table from the days it lived in the jobs app: moving a model keeps its rows.
        db_table = "jobs_network"
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="network_name_unique_per_owner")]

    def __str__(self) -> str:
        return self.name
