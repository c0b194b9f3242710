"""Worker start-up and shut-down: take back what this worker's earlier process held, then keep
taking back silent work while the worker runs."""
from __future__ import annotations

from typing import Any

from celery.signals import worker_ready, worker_shutdown

from workbench import leases, recovery

_reaper: recovery.Reaper | None = None


@worker_ready.connect
def take_back_on_start(sender: Any = None, **kwargs: Any) -> None:
    global _reaper
    name = getattr(sender, "hostname", "") or ""
    leases.set_worker_name(name)
    recovery.work_take_back(worker=name or None)
    _reaper = recovery.Reaper()
    _reaper.start()


@worker_shutdown.connect
def stop_reaper(**kwargs: Any) -> None:
    if _reaper is not None:
        _reaper.stop()
