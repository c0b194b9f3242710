from __future__ import annotations

from celery import shared_task

from datasets import services


@shared_task(name="datasets.ingest", acks_late=True, reject_on_worker_lost=True)
def ingest_dataset(dataset_id: int) -> None:
    services.dataset_ingest(dataset_id=dataset_id)
