from __future__ import annotations

from typing import Any

from celery import shared_task

from jobs import services


@shared_task(bind=True, name="jobs.train", acks_late=True, reject_on_worker_lost=True)
def train_job(self: Any, job_id: int) -> None:
    if not services.job_train(job_id=job_id):
        # Its devices are busy: to the back of the queue it came from, so the jobs behind it can run.
        queue = (self.request.delivery_info or {}).get("routing_key")
        train_job.apply_async(args=[job_id], queue=queue or None)


@shared_task(name="jobs.classify", ignore_result=False)
def classify_images(backend: str, weights: str, images: str) -> list[list[float]] | str:
    from jobs.inference import classify_on_worker

    return classify_on_worker(backend=backend, weights=weights, images=images)


@shared_task(name="jobs.augmentation_preview", ignore_result=False)
def augmentation_preview(dataset_id: int, augmentation: dict[str, Any], seed: int, count: int) -> dict[str, Any]:
    from training.torch.augment_preview import preview_on_worker
    from workbench import faults

    faults.pause("preview")
    return preview_on_worker(dataset_id=dataset_id, augmentation=augmentation, seed=seed, count=count)
