from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(name="results.evaluate", acks_late=True)
def evaluate(evaluation_id: int) -> None:
    from results.evaluation import evaluation_run

    evaluation_run(evaluation_id=evaluation_id)


@shared_task(name="results.inspect", ignore_result=False)
def inspect(backend: str, weights: str, image: str) -> dict[str, Any]:
    from results.inspect import inspect_on_worker

    return inspect_on_worker(backend=backend, weights=weights, image=image)


@shared_task(name="results.compress", acks_late=True)
def compress(compression_id: int) -> None:
    from results.compress import compression_run

    compression_run(compression_id=compression_id)


@shared_task(name="results.classify_compressed", ignore_result=False)
def classify_compressed(backend: str, weights: str, images: str) -> list[list[float]]:
    from results.compress import classify_compressed_on_worker

    return classify_compressed_on_worker(backend=backend, weights=weights, images=images)


@shared_task(name="results.export", acks_late=True)
def export(export_id: int) -> None:
    from results.export import export_run

    export_run(export_id=export_id)


@shared_task(name="results.classify_many", acks_late=True)
def classify_many(batch_id: int) -> None:
    from results.batch import batch_run

    batch_run(batch_id=batch_id)
