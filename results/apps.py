from __future__ import annotations

from django.apps import AppConfig


class ResultsConfig(AppConfig):
    """Using a trained job: evaluate, classify many, top images, inspect, export, compress."""

    name = "results"
    default_auto_field = "django.db.models.BigAutoField"
