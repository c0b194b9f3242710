"""A bad TRAINING_BACKENDS setting is reported at start-up, without importing any framework."""
from __future__ import annotations

import importlib.util
from typing import Any

from django.conf import settings
from django.core.checks import Error, register


@register()
def check_training_backends(app_configs: Any, **kwargs: Any) -> list[Error]:
    configured = getattr(settings, "TRAINING_BACKENDS", None)
    if not isinstance(configured, dict) or not configured:
        return [Error("TRAINING_BACKENDS must be a non-empty dict of alias → {'BACKEND': dotted path}.",
                      id="jobs.E001")]
    errors = [error for alias, config in configured.items() for error in _check_one(alias, config)]
    if settings.DEFAULT_TRAINING_BACKEND not in configured:
        errors.append(Error(f"DEFAULT_TRAINING_BACKEND '{settings.DEFAULT_TRAINING_BACKEND}' is not in "
                            "TRAINING_BACKENDS.", id="jobs.E004"))
    return errors


def _check_one(alias: str, config: Any) -> list[Error]:
    if not isinstance(config, dict) or not isinstance(config.get("BACKEND"), str):
        return [Error(f"TRAINING_BACKENDS['{alias}'] needs a 'BACKEND' dotted path.", id="jobs.E002")]
    module, _, _ = config["BACKEND"].rpartition(".")
    try:
        found = bool(module) and importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        return [Error(f"TRAINING_BACKENDS['{alias}']: module '{module}' cannot be found.", id="jobs.E003")]
    return []
