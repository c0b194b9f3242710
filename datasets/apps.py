from __future__ import annotations

from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "datasets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from datasets.models import Dataset
        from workbench import recovery

        recovery.register(recovery.WorkKind(Dataset, "datasets.ingest"))
