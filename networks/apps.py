from __future__ import annotations

from django.apps import AppConfig


class NetworksConfig(AppConfig):
    name = "networks"
    default_auto_field = "django.db.models.BigAutoField"
