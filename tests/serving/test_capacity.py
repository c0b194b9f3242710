"""Interactive work never waits behind training: with every training slot busy and more jobs queued,
classify, the augmentation preview and an upload's ingest are still answered (real workers)."""
from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from jobs.models import TrainingJob
from tests.conftest import OUTCOME_SECONDS, Worker, class_images, make_image, wait_dataset, wait_for, zip_bytes
from tests.jobs.test_training_flow import ready_colours, start, wait_job
from workers.models import Worker as WorkerRow

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def background_worker(celery_worker: Worker) -> Iterator[Worker]:
    """A worker for the background queue alone, as `make run` starts one beside the training worker."""
    worker = Worker(f"test-background-{os.getpid()}", Path(settings.DATA_DIR) / "background.log",
                    settings.WORKER_ROLES["background"])
    worker.start()
    yield worker
    worker.stop()


def busy_training(client, dataset, count: int = 3) -> list[int]:  # type: ignore[no-untyped-def]
    """More long jobs than the training worker has slots: two train, the rest wait in the queue."""
    ids = [start(client, dataset, epochs=500, seed=i)["id"] for i in range(count)]
    wait_for(lambda: TrainingJob.objects.filter(pk__in=ids, status="running").count() == 2, OUTCOME_SECONDS,
             "two jobs to take both training slots")
    return ids


def green_png() -> io.BytesIO:
    image = io.BytesIO(make_image((30, 200, 40), size=(30, 30)))
    image.name = "green.png"
    return image


def test_classify_and_the_preview_answer_while_every_training_slot_is_busy(celery_worker, alice_api):
    dataset = ready_colours(alice_api)
    finished = wait_job(start(alice_api, dataset)["id"])
    assert finished.status == "done", finished.error
    busy = busy_training(alice_api, dataset)

    classified = alice_api.post(f"/api/v1/jobs/{finished.pk}/classify/", {"image": green_png()}, format="multipart")
    preview = alice_api.get(f"/api/v1/datasets/{dataset.pk}/augmentation-preview/?augmentation=%7B%22rot90%22%3Atrue%7D")

    assert classified.status_code == 200, classified.json()
    assert classified.json()["predictions"][0]["label"] == "green"
    assert preview.status_code == 200, preview.json()
    assert TrainingJob.objects.filter(pk__in=busy, status="running").count() == 2, "training went on meanwhile"


def test_an_upload_is_ingested_while_training_jobs_fill_the_training_worker(celery_worker, background_worker,
                                                                            alice_api):
    dataset = ready_colours(alice_api)
    busy_training(alice_api, dataset, count=4)
    archive = io.BytesIO(zip_bytes(class_images(8)))
    archive.name = "more.zip"

    response = alice_api.post("/api/v1/datasets/", {"name": "More", "archive": archive, "image_width": 8,
                                                     "image_height": 8, "channels": 3}, format="multipart")
    ingested = wait_dataset(response.json()["id"])

    assert ingested.status == "ready", ingested.error
    assert TrainingJob.objects.filter(status="queued").exists(), "training jobs were still waiting"


def test_the_serving_worker_keeps_a_model_warm_and_says_so(celery_worker, alice_api):
    dataset = ready_colours(alice_api)
    job = wait_job(start(alice_api, dataset)["id"])
    for _ in range(3):
        response = alice_api.post(f"/api/v1/jobs/{job.pk}/classify/", {"image": green_png()}, format="multipart")
        assert response.status_code == 200, response.json()
    snapshot = job.snapshots.order_by("-epoch")[0].path
    serving = celery_worker.serving
    assert serving is not None

    def warm_model() -> dict | None:
        row = WorkerRow.objects.filter(name__startswith=serving.name).first()
        models = (row.serving or {}).get("models", []) if row else []
        return next((m for m in models if m["name"].endswith(snapshot) and m["hits"] >= 2), None)

    model = wait_for(warm_model, OUTCOME_SECONDS, "the serving worker to report the warm model")
    assert model["bytes"] > 0 and model["backend"] == "torch"  # type: ignore[index]
