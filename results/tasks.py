from __future__ import annotations

from celery import shared_task


@shared_task(name="results.evaluate", acks_late=True)
def evaluate(evaluation_id: int) -> None:
    from results.evaluation import evaluation_run

    evaluation_run(evaluation_id=evaluation_id)
