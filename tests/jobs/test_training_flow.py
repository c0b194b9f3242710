"""Training jobs end to end: API → real Celery worker → torch backend → curves, snapshots, classify."""
from __future__ import annotations

import io
import json
import os
import threading
import time
from pathlib import Path

import pytest
from celery.backends.filesystem import FilesystemBackend
from safetensors import safe_open

from jobs.models import MetricPoint, TrainingJob
from jobs.selectors import job_log_text
from tests.conftest import OUTCOME_SECONDS, class_images, make_image, wait_dataset, wait_for, wait_in_log, zip_bytes
from workbench.celery import app as celery_app
from workbench.celery import drop_expired_results
from workers.models import Worker

pytestmark = pytest.mark.django_db(transaction=True)


def ready_colours(client, per_class: int = 24):  # type: ignore[no-untyped-def]
    archive = io.BytesIO(zip_bytes(class_images(per_class)))
    archive.name = "colours.zip"
    response = client.post("/api/v1/datasets/", {"name": "Colours", "archive": archive, "image_width": 8,
                                                 "image_height": 8, "channels": 3, "val_percent": 25, "seed": 1},
                           format="multipart")
    dataset = wait_dataset(response.json()["id"])
    assert dataset.status == "ready", dataset.error
    return dataset


def wait_job(pk: int, timeout: float = OUTCOME_SECONDS) -> TrainingJob:
    def finished():  # type: ignore[no-untyped-def]
        job = TrainingJob.objects.get(pk=pk)
        return job if not job.is_active else None

    return wait_for(finished, timeout, f"job {pk} to finish")  # type: ignore[return-value]


def start(client, dataset, **fields):  # type: ignore[no-untyped-def]
    body = {"dataset": dataset.pk, "network": "mlp", "epochs": 4, "batch_size": 8, "learning_rate": 0.05,
            "seed": 3, **fields}
    response = client.post("/api/v1/jobs/", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_it_trains_to_high_accuracy_on_a_separable_dataset(celery_worker, alice_api):
    dataset = ready_colours(alice_api)

    job = wait_job(start(alice_api, dataset)["id"])

    assert job.status == "done", job.error
    assert job.latest["val_accuracy"] >= 0.95
    assert job.progress == 1.0
    losses = list(MetricPoint.objects.filter(job=job, split="train", name="loss").order_by("step")
                  .values_list("value", flat=True))
    assert losses[-1] < losses[0]
    body = alice_api.get(f"/api/v1/jobs/{job.pk}/").json()
    assert body["snapshots"] == [1.0, 2.0, 3.0, 4.0]
    assert body["best"]["val_accuracy"] >= 0.95
    import torch

    assert body["device"] == "auto" and body["device_used"] == ("cuda:0" if torch.cuda.is_available() else "cpu")


def test_it_writes_safetensors_snapshots_with_json_metadata(celery_worker, alice_api):
    dataset = ready_colours(alice_api)
    job = wait_job(start(alice_api, dataset, epochs=1)["id"])

    weights = job.folder / "snapshots" / "epoch_1.safetensors"
    with safe_open(weights, framework="pt") as handle:
        assert len(list(handle.keys())) > 0
    meta = json.loads((job.folder / "model.json").read_text())
    assert meta["classes"] == ["blue", "green", "red"]
    assert meta["input_shape"] == [3, 8, 8]
    assert not list(job.folder.rglob("*.pt")) and not list(job.folder.rglob("*.pkl"))


def test_it_classifies_an_image_with_the_trained_model(celery_worker, alice_api):
    dataset = ready_colours(alice_api)
    job = wait_job(start(alice_api, dataset)["id"])
    image = io.BytesIO(make_image((30, 200, 40), size=(30, 30), noise_seed=99))
    image.name = "green.png"

    results_before = stored_results()

    response = alice_api.post(f"/api/v1/jobs/{job.pk}/classify/", {"image": image}, format="multipart")

    assert response.status_code == 200, response.json()
    predictions = response.json()["predictions"]
    assert predictions[0]["label"] == "green"
    assert len(predictions) == 3  # top-5 of a 3-class model
    assert predictions[0]["probability"] > 0.5
    assert sum(p["probability"] for p in predictions) == pytest.approx(1.0, abs=1e-4)
    assert stored_results() == results_before, "the answer is forgotten once read"
    image.seek(0)
    inferred = alice_api.post(f"/api/v1/jobs/{job.pk}/infer/", {"image": image}, format="multipart")
    assert inferred.status_code == 200, inferred.json()
    assert inferred.json()["task"] == "classification"
    assert inferred.json()["predictions"] == predictions  # infer answers as the job's task: classify's top 5


def stored_results() -> set[str]:
    """The task results the result store holds now: files in the embedded store, keys in Redis."""
    backend = celery_app.backend
    if isinstance(backend, FilesystemBackend):
        return set(os.listdir(os.fsdecode(backend.path)))
    return {key.decode() for key in backend.client.scan_iter("celery-task-meta-*")}


def test_the_embedded_result_store_drops_answers_nobody_read(settings):
    backend = celery_app.backend
    if not isinstance(backend, FilesystemBackend):
        pytest.skip("Redis expires results by itself")
    folder = Path(os.fsdecode(backend.path))
    stale, fresh = folder / "celery-task-meta-stale", folder / "celery-task-meta-fresh"
    stale.write_text("{}")
    fresh.write_text("{}")
    old = time.time() - settings.CELERY_RESULT_EXPIRES - 60
    os.utime(stale, (old, old))

    drop_expired_results()

    assert not stale.exists() and fresh.exists()
    fresh.unlink()


def test_it_gives_the_same_curves_for_the_same_seed(celery_worker, alice_api):
    dataset = ready_colours(alice_api)
    first = wait_job(start(alice_api, dataset, epochs=2)["id"])
    second = wait_job(start(alice_api, dataset, epochs=2)["id"])

    def curve(job):  # type: ignore[no-untyped-def]
        return list(MetricPoint.objects.filter(job=job).exclude(split="system").order_by("split", "name", "step")
                    .values_list("split", "name", "step", "value"))

    assert curve(first) == curve(second)
    assert len(curve(first)) > 10


def test_a_job_on_a_gpu_the_worker_lacks_ends_in_error_saying_so(celery_worker, alice_api):
    import torch

    dataset = ready_colours(alice_api)
    missing = torch.cuda.device_count()  # one past the last GPU this machine has

    job = wait_job(start(alice_api, dataset, device=f"cuda:{missing}")["id"])

    assert job.status == "error"
    assert job.error == (f"Device cuda:{missing} was asked for, but this worker has {missing} CUDA device(s). "
                         "Choose auto, cpu, or a GPU it has.")
    assert f"Error: Device cuda:{missing} was asked for" in job_log_text(job)


def test_a_classify_the_worker_cannot_do_is_a_json_503_with_the_reason(celery_worker, alice_api):
    dataset = ready_colours(alice_api)
    job = wait_job(start(alice_api, dataset, epochs=1)["id"])
    (job.folder / job.snapshots.get().path).unlink()  # the worker will not find the weights
    image = io.BytesIO(make_image((30, 200, 40), size=(30, 30)))
    image.name = "green.png"

    response = alice_api.post(f"/api/v1/jobs/{job.pk}/classify/", {"image": image}, format="multipart")

    assert response.status_code == 503
    assert response.json()["error"].startswith("The serving worker could not do it (FileNotFoundError")


def test_a_classify_with_no_serving_worker_is_a_json_503_that_says_so(restartable_serving, alice_api, settings):
    dataset = ready_colours(alice_api)
    job = wait_job(start(alice_api, dataset, epochs=1)["id"])
    restartable_serving.kill()
    Worker.objects.filter(name__startswith=restartable_serving.name).delete()  # silent for long: taken for stopped
    settings.WORKBENCH_SERVING_TIMEOUT = 2
    image = io.BytesIO(make_image((30, 200, 40), size=(30, 30)))
    image.name = "green.png"

    response = alice_api.post(f"/api/v1/jobs/{job.pk}/classify/", {"image": image}, format="multipart")

    assert response.status_code == 503
    assert response.json()["error"].startswith("No serving worker is running (none answered within 2 s")


def test_a_classify_no_serving_worker_answers_in_time_is_a_json_504_that_says_so(restartable_serving, alice_api,
                                                                                   settings):
    dataset = ready_colours(alice_api)
    job = wait_job(start(alice_api, dataset, epochs=1)["id"])
    restartable_serving.kill()
    restartable_serving.start(WORKBENCH_FAULT_PAUSE="classify=120")  # there, and busy for longer than the wait
    wait_for(lambda: Worker.objects.filter(name__startswith=restartable_serving.name).exists(), OUTCOME_SECONDS,
             "the serving worker to report")
    settings.WORKBENCH_SERVING_TIMEOUT = 2
    image = io.BytesIO(make_image((30, 200, 40), size=(30, 30)))
    image.name = "green.png"

    response = alice_api.post(f"/api/v1/jobs/{job.pk}/classify/", {"image": image}, format="multipart")

    assert response.status_code == 504
    assert response.json()["error"].startswith("The serving workers did not answer within 2 s: they are all busy")


def test_a_classify_whose_worker_dies_is_asked_again_and_answered(restartable_serving, alice_api, settings):
    dataset = ready_colours(alice_api)
    job = wait_job(start(alice_api, dataset)["id"])
    restartable_serving.kill()
    restartable_serving.start(WORKBENCH_FAULT_PAUSE="classify=120")
    settings.WORKBENCH_SERVING_RESEND_SECONDS = 2
    settings.WORKBENCH_SERVING_TIMEOUT = 60  # a restart takes seconds on a loaded machine

    def kill_it_while_it_holds_the_request() -> None:
        wait_in_log(restartable_serving, "at classify")
        restartable_serving.kill()
        restartable_serving.start()

    killer = threading.Thread(target=kill_it_while_it_holds_the_request)
    killer.start()
    image = io.BytesIO(make_image((30, 200, 40), size=(30, 30), noise_seed=99))
    image.name = "green.png"
    response = alice_api.post(f"/api/v1/jobs/{job.pk}/classify/", {"image": image}, format="multipart")
    killer.join()

    assert response.status_code == 200, response.json()
    assert response.json()["predictions"][0]["label"] == "green"
