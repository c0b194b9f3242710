from __future__ import annotations

from celery import shared_task
from django.db import DatabaseError
from sqlalchemy.exc import OperationalError

from sweeps import services

# A database busy for a moment (Django's connection or Optuna's): the advance is idempotent, try again.
_TRANSIENT = (DatabaseError, OperationalError)


@shared_task(name="sweeps.advance", acks_late=True, reject_on_worker_lost=True, autoretry_for=_TRANSIENT,
             retry_backoff=1, retry_backoff_max=30, max_retries=5)
def advance_sweep(sweep_id: int) -> None:
    services.sweep_advance(sweep_id=sweep_id)
