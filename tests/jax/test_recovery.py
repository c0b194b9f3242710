"""A jax job whose worker is killed mid-run resumes from its last snapshot and ends as if never killed."""
from __future__ import annotations

import random

import numpy as np
import pytest
from safetensors.numpy import load_file

from jobs.models import TrainingJob
from tests.conftest import Worker, wait_for
from tests.jobs.test_recovery import curve, log_text, reached, ready_digits
from tests.jobs.test_training_flow import wait_job

pytestmark = pytest.mark.django_db(transaction=True)

SETTINGS = {"network": "lenet", "epochs": 3, "batch_size": 16, "optimizer": "adam", "learning_rate": 0.002, "seed": 9,
            "backend": "jax"}


def start(client, dataset) -> int:  # type: ignore[no-untyped-def]
    response = client.post("/api/v1/jobs/", {"dataset": dataset.pk, **SETTINGS}, format="json")
    assert response.status_code == 201, response.json()
    return int(response.json()["id"])


def final_weights(job: TrainingJob) -> dict[str, np.ndarray]:
    return load_file(str(job.folder / job.snapshots.order_by("-epoch").first().path))


def test_a_killed_jax_job_resumes_to_the_same_weights_and_curves(restartable_worker: Worker, alice_api):
    dataset = ready_digits(alice_api)
    reference = wait_job(start(alice_api, dataset))
    assert reference.status == "done", reference.error
    total = reference.metrics.filter(split="train", name="loss").order_by("-step")[0].step
    kill_at = random.Random().randint(total // 3 + 5, total * 2 // 3)  # past the first snapshot

    pk = start(alice_api, dataset)
    wait_for(lambda: reached(pk, kill_at), 120, f"job {pk} to reach step {kill_at}")
    restartable_worker.kill()
    restartable_worker.start()
    job = wait_job(pk)

    message = f"killed at step {kill_at} of {total}"
    assert job.status == "done", (message, job.error)
    assert job.attempt == 2 and "Resumed from the snapshot at epoch" in log_text(job), message
    want, got = final_weights(reference), final_weights(job)
    assert want.keys() == got.keys()
    assert all(np.array_equal(want[name], got[name]) for name in want), message
    assert job.latest == pytest.approx(reference.latest, abs=1e-6), message
    want_curve, got_curve = curve(reference.pk), curve(pk)
    assert got_curve.keys() == want_curve.keys(), f"{message}: steps missing or extra"
    assert max(abs(got_curve[k] - want_curve[k]) for k in want_curve) <= 1e-5, message
