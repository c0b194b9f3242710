from __future__ import annotations

from celery import shared_task

from sweeps import services


@shared_task(name="sweeps.advance", acks_late=True, reject_on_worker_lost=True)
def advance_sweep(sweep_id: int) -> None:
    services.sweep_advance(sweep_id=sweep_id)
