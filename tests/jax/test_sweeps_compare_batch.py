"""What a jax job does with the rest of the product, on the session's real Celery worker: a sweep of
jax trials with early stopping names its best, compare shows a torch and a jax job side by side, and
classify many reads a jax job's model."""
from __future__ import annotations

import pytest

from jobs.models import TrainingJob
from tests.conftest import zip_bytes
from tests.jobs.test_recovery import ready_digits
from tests.jobs.test_training_flow import ready_colours, start, wait_job
from tests.results.test_batch import fresh_images, upload, wait_batch
from tests.sweeps.test_sweep_flow import create as create_sweep
from tests.sweeps.test_sweep_flow import wait_sweep

pytestmark = pytest.mark.django_db(transaction=True)

SWEEP_BASE = {"epochs": 3, "batch_size": 32, "optimizer": "sgd", "learning_rate": 0.05, "seed": 1, "backend": "jax"}


def test_a_random_search_of_jax_trials_stops_hopeless_ones_early_and_names_its_best(celery_worker, alice_api):
    dataset = ready_digits(alice_api)
    search = {"method": "random", "trials": 6, "seed": 7,
              "space": {"learning_rate": {"low": 1e-6, "high": 0.3, "log": True}}}
    early = {"method": "asha", "metric": "val_accuracy", "mode": "max", "grace_epochs": 1, "reduction_factor": 3}
    pk = create_sweep(alice_api, dataset, base=SWEEP_BASE, search=search, max_concurrent=1, early_stopping=early)

    body = wait_sweep(alice_api, pk, timeout=420)

    assert body["status"] == "done", body
    jobs = body["jobs"]
    assert len(jobs) == 6 and {job["status"] for job in jobs} <= {"done", "stopped"}, jobs
    assert set(TrainingJob.objects.filter(trial__sweep_id=pk).values_list("backend", flat=True)) == {"jax"}
    stopped = [job for job in jobs if job["status"] == "stopped"]
    assert stopped, [(job["params"], job["status"], job["value"]) for job in jobs]
    assert all(job["stop_reason"] == "early_stopping" and job["epoch"] < 3 for job in stopped)
    values = [job["value"] for job in jobs if job["value"] is not None]
    assert values == sorted(values, reverse=True)
    assert body["best_job"]["id"] == jobs[0]["id"] and body["best_job"]["best"]["val_accuracy"] == max(values)


def test_compare_gives_a_torch_job_and_a_jax_job_s_curves_side_by_side(celery_worker, alice_api):
    dataset = ready_colours(alice_api)
    torch_job = wait_job(start(alice_api, dataset, epochs=2)["id"])
    jax_job = wait_job(start(alice_api, dataset, epochs=2, backend="jax")["id"])
    assert (torch_job.status, jax_job.status) == ("done", "done"), (torch_job.error, jax_job.error)

    response = alice_api.get(f"/api/v1/compare/?jobs={torch_job.pk},{jax_job.pk}")

    assert response.status_code == 200, response.content[:300]
    listed = response.json()["jobs"]
    assert [job["id"] for job in listed] == [torch_job.pk, jax_job.pk]
    assert [job["settings"].get("backend") for job in listed] == ["torch", "jax"]
    for job in listed:
        assert {"train_loss", "val_loss", "val_accuracy", "lr"} <= set(job["series"]), job["settings"]
        assert [x for x, _ in job["series"]["val_accuracy"]] == [1, 2], job["settings"]
        assert job["series"]["train_loss"] and job["best"]["val_accuracy"] is not None, job["settings"]


def test_classify_many_reads_a_jax_job_s_model(celery_worker, alice_api):
    job = wait_job(start(alice_api, ready_colours(alice_api), epochs=3, backend="jax")["id"])
    assert job.status == "done", job.error

    response = alice_api.post(f"/api/v1/jobs/{job.pk}/classify-many/",
                              {"archive": upload(zip_bytes(fresh_images(6))), "name": "jax"}, format="multipart")

    assert response.status_code == 201, response.json()
    result = wait_batch(response.json()["id"]).result
    assert result["count"] == 18 and result["top1"] >= 0.9
    assert sorted(result["classes"]) == ["blue", "green", "red"] and len(result["confusion"]) == 3
