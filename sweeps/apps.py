from __future__ import annotations

from django.apps import AppConfig


class SweepsConfig(AppConfig):
    name = "sweeps"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from jobs import hooks
        from sweeps import pruning, services
        from workbench import recovery

        hooks.on_job_ended(services.sweep_job_ended)
        hooks.on_validation(pruning.trial_validated)
        recovery.register_check(services.sweeps_unstall)
