"""A serving worker's capacity on GET /api/v1/workers/ and the Workers page: its device, its warm
models (named only for those who may see their job), its bytes and batches."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import TrainingJob
from tests.workers.test_workers import report, running_job
from workers import services
from workers.models import Worker
from workers.selectors import HIDDEN_MODEL, warm_model_job

pytestmark = pytest.mark.django_db

MB = 1024**2


def serving_report(*models: tuple[str, int]) -> Worker:
    """A serving worker (the infer queue alone) holding `models`: (name, bytes) each, hit 5 times."""
    warm = [{"name": name, "backend": "torch", "bytes": size, "hits": 5, "loaded_at": time.time() - 60}
            for name, size in models]
    return services.worker_report(report=services.WorkerReport(
        name="celery@serving-1", host="serving-1", pid=99, queues=["infer"], concurrency=32,
        started_at=timezone.now() - timedelta(minutes=5),
        devices=[{"id": "cpu", "name": "16 CPU cores", "source": "host"}],
        serving={"device": "cpu", "models": warm, "bytes": sum(size for _, size in models),
                 "capacity_bytes": 1024 * MB, "batches": 4, "requests": 10, "largest_batch": 5}))


def listed(client, name: str) -> dict:  # type: ignore[no-untyped-def]
    return [w for w in client.get("/api/v1/workers/").json()["results"] if w["name"] == name][0]


def test_it_shows_a_serving_workers_capacity_and_null_for_a_worker_that_does_not_serve(alice, alice_api):
    job = running_job(alice, "alice-lenet", "celery@gpu-1", "cpu")
    serving_report((f"jobs/{job.pk}/snapshots/epoch_3.safetensors", 12 * MB))
    report("celery@gpu-1")

    serving = listed(alice_api, "celery@serving-1")["serving"]

    assert listed(alice_api, "celery@gpu-1")["serving"] is None
    assert {k: serving[k] for k in ("device", "bytes", "capacity_bytes", "batches", "requests", "largest_batch")} == {
        "device": "cpu", "bytes": 12 * MB, "capacity_bytes": 1024 * MB, "batches": 4, "requests": 10,
        "largest_batch": 5}
    [model] = serving["models"]
    assert model["name"] == f"jobs/{job.pk}/snapshots/epoch_3.safetensors" and model["job"] == job.pk
    assert model["backend"] == "torch" and model["bytes"] == 12 * MB and model["hits"] == 5
    assert time.time() - 120 < model["loaded_at"] < time.time()


def test_it_hides_the_name_of_another_users_model_but_keeps_its_bytes_and_hits(alice, bob, staff, alice_api):
    from rest_framework.test import APIClient

    mine, theirs = running_job(alice, "alice-lenet", "w", "cpu"), running_job(bob, "bob-secret", "w", "cpu")
    serving_report((f"jobs/{mine.pk}/snapshots/epoch_1.safetensors", MB),
                   (f"jobs/{theirs.pk}/compressed/3/model.pt", 2 * MB),
                   ("elsewhere/weights/of/no-job.safetensors", 3 * MB))

    models = listed(alice_api, "celery@serving-1")["serving"]["models"]

    assert [(m["name"], m["job"], m["bytes"], m["hits"]) for m in models] == [
        (f"jobs/{mine.pk}/snapshots/epoch_1.safetensors", mine.pk, MB, 5),
        (HIDDEN_MODEL, None, 2 * MB, 5), (HIDDEN_MODEL, None, 3 * MB, 5)]
    admin = APIClient()
    admin.force_authenticate(staff)
    assert [m["job"] for m in listed(admin, "celery@serving-1")["serving"]["models"]] == [mine.pk, theirs.pk, None]


def test_a_warm_models_job_is_the_folder_after_jobs():
    assert warm_model_job("jobs/12/snapshots/epoch_3.safetensors") == 12
    assert warm_model_job("jobs/12/compressed/4/model.pt") == 12
    assert warm_model_job("12/compressed/4/model.pt") is None and warm_model_job("jobs/x/y.pt") is None


def test_the_page_shows_the_serving_section_with_links_only_to_jobs_the_user_may_see(alice, bob, client):
    mine, theirs = running_job(alice, "alice-lenet", "w", "cpu"), running_job(bob, "bob-secret", "w", "cpu")
    serving_report((f"jobs/{mine.pk}/snapshots/epoch_1.safetensors", 12 * MB + MB // 3),
                   (f"jobs/{theirs.pk}/snapshots/epoch_2.safetensors", MB))
    report("celery@gpu-1")
    Worker.objects.filter(name="celery@gpu-1").update(queues=["train", "background"])
    client.force_login(alice)

    page = client.get("/workers/").content.decode()

    assert "<h3>Serving</h3>" in page and page.count("<h3>Serving</h3>") == 1
    assert "13.3 MB of 1024 MB held warm" in page
    assert "10 requests answered in 4 batches" in page and "mean batch 2.5, largest 5" in page
    assert f'href="/jobs/{mine.pk}/"><code>jobs/{mine.pk}/snapshots/epoch_1.safetensors' in page
    assert f"jobs/{theirs.pk}/" not in page and HIDDEN_MODEL in page and "1.0 MB" in page
    assert "Training</span>" in page and "Background (ingest, evaluation, export)</span>" in page
    assert 'class="status worker-role">Serving</span>' in page


def test_a_serving_worker_with_no_warm_model_says_so(alice, client):
    serving_report()
    client.force_login(alice)

    page = client.get("/workers/").content.decode()

    assert "No model warm yet" in page and "0.0 MB of 1024 MB held warm" in page
    assert not TrainingJob.objects.exists()
