from __future__ import annotations

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from jobs import checks, services  # noqa: F401  (checks: registers the system check)
        from jobs.models import TrainingJob
        from workbench import recovery

        recovery.register(recovery.WorkKind(TrainingJob, "jobs.train", retry=services.job_retry_fields,
                                            taken_back=services.job_taken_back))
