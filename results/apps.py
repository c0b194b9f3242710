from __future__ import annotations

from django.apps import AppConfig


class ResultsConfig(AppConfig):
    """Using a trained job: evaluate, classify many, top images, inspect, export, compress."""

    name = "results"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from results.models import BatchClassification, Compression, Evaluation, Export
        from workbench import recovery

        # Quick to redo: a taken-back result simply starts again.
        for model, task in ((Evaluation, "results.evaluate"), (BatchClassification, "results.classify_many"),
                            (Export, "results.export"), (Compression, "results.compress")):
            recovery.register(recovery.WorkKind(model, task))
