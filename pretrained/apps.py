from __future__ import annotations

from django.apps import AppConfig


class PretrainedConfig(AppConfig):
    """Pretrained models: weights to fine-tune from, uploaded as safetensors or made from a job's snapshot."""

    name = "pretrained"
    default_auto_field = "django.db.models.BigAutoField"
