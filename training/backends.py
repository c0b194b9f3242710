"""Training backends by alias, as Django does for caches and storages.

`backends["torch"]` imports the configured class on first use and keeps the instance; the web
process never asks for one, so it never imports a framework. The web reads what a backend can do
from its class (`backends.backend_class(alias)`), whose module must not import a framework either:
the work is imported by the instance's calls.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from training.contract import TrainingBackend


class BackendHandler:
    def __init__(self) -> None:
        self._instances: dict[str, TrainingBackend] = {}
        self._lock = threading.Lock()

    def config(self, alias: str) -> dict[str, Any]:
        try:
            return settings.TRAINING_BACKENDS[alias]
        except KeyError:
            raise ImproperlyConfigured(f"No training backend '{alias}' in TRAINING_BACKENDS.") from None

    def backend_class(self, alias: str) -> type[TrainingBackend]:
        """The configured class, for its capability flags; its module imports no framework."""
        return import_string(self.config(alias)["BACKEND"])

    def __getitem__(self, alias: str) -> TrainingBackend:
        with self._lock:
            if alias not in self._instances:
                options = dict(self.config(alias).get("OPTIONS", {}))
                self._instances[alias] = self.backend_class(alias)(alias, options)
            return self._instances[alias]

    def loaded(self) -> list[str]:
        """The aliases this process has made an instance of (what it may hold loaded)."""
        with self._lock:
            return list(self._instances)


backends = BackendHandler()


@dataclass(frozen=True)
class BackendEntry:
    alias: str
    framework: str
    version: str  # of the installed framework; "" when it is not installed on this host
    tasks: list[str]
    capabilities: dict[str, Any]


def backend_list() -> list[BackendEntry]:
    """Every configured backend as GET backends/ shows it, read from its class: no framework is
    imported (the version comes from the installed distribution's metadata)."""
    entries = []
    for alias in settings.TRAINING_BACKENDS:
        cls = backends.backend_class(alias)
        entries.append(BackendEntry(alias, cls.framework, _installed_version(cls.framework_package), list(cls.tasks),
                                    cls.capabilities()))
    return entries


def _installed_version(package: str) -> str:
    try:
        return metadata.version(package) if package else ""
    except metadata.PackageNotFoundError:
        return ""
