"""A killed worker costs a training job nothing: it resumes by itself, faithfully, from whole snapshots."""
from __future__ import annotations

import random

import pytest
import torch
from safetensors.torch import load_file

from jobs.models import MetricPoint, TrainingJob
from jobs.selectors import job_log_text
from tests.conftest import Worker, wait_dataset, wait_for, wait_in_log
from tests.jobs.test_training_flow import start, wait_job

pytestmark = pytest.mark.django_db(transaction=True)

SETTINGS = {"network": "lenet", "epochs": 4, "batch_size": 8, "learning_rate": 0.02, "seed": 11,
            "optimizer": "adam"}


def ready_digits(client):  # type: ignore[no-untyped-def]
    dataset = wait_dataset(client.post("/api/v1/datasets/example/").json()["id"])
    assert dataset.status == "ready", dataset.error
    return dataset


def reached(pk: int, step: int) -> bool:
    return MetricPoint.objects.filter(job_id=pk, split="train", name="loss", step__gte=step).exists()


def final_weights(job: TrainingJob) -> dict[str, torch.Tensor]:
    return load_file(job.folder / job.snapshots.order_by("-epoch").first().path)


def curve(pk: int) -> dict[tuple[str, str, int], float]:
    # The `system` points (CPU, memory) differ from run to run by nature: the training curves must not.
    return {(p.split, p.name, p.step): p.value for p in MetricPoint.objects.filter(job_id=pk).exclude(split="system")}


def log_text(job: TrainingJob) -> str:
    return job_log_text(job)


def test_it_resumes_a_job_killed_at_a_random_step_by_itself_as_if_never_killed(restartable_worker: Worker,
                                                                                alice_api):
    dataset = ready_digits(alice_api)
    reference = wait_job(start(alice_api, dataset, **SETTINGS)["id"])
    assert reference.status == "done", reference.error
    total = TrainingJob.objects.get(pk=reference.pk).metrics.filter(split="train", name="loss").order_by("-step")[0].step
    kill_at = random.Random().randint(total // 20, total * 2 // 3)

    pk = start(alice_api, dataset, **SETTINGS)["id"]
    wait_for(lambda: reached(pk, kill_at), 120, f"job {pk} to reach step {kill_at}")
    restartable_worker.kill()
    restartable_worker.start()  # the same worker comes back; nobody touches the job
    job = wait_job(pk)

    message = f"killed at step {kill_at} of {total}"
    assert job.status == "done", (message, job.error)
    assert job.attempt == 2, message
    assert "Attempt 1 was lost: its worker restarted" in log_text(job), message
    want, got = final_weights(reference), final_weights(job)
    assert want.keys() == got.keys()
    worst = max(float((want[k] - got[k]).abs().max()) for k in want)
    assert worst <= 1e-6, f"{message}: weights differ by {worst}"
    assert job.best == pytest.approx(reference.best, abs=1e-6), message
    assert job.latest == pytest.approx(reference.latest, abs=1e-6), message
    want_curve, got_curve = curve(reference.pk), curve(pk)
    assert got_curve.keys() == want_curve.keys(), f"{message}: steps missing or extra"
    assert max(abs(got_curve[k] - want_curve[k]) for k in want_curve) <= 1e-5, message


def test_a_kill_during_a_snapshot_write_resumes_from_the_last_whole_snapshot(restartable_worker: Worker, alice_api):
    dataset = ready_digits(alice_api)
    restartable_worker.kill()
    restartable_worker.start(WORKBENCH_FAULT_PAUSE="snapshot:2=120")  # stops in the middle of epoch 2's write
    pk = start(alice_api, dataset, **{**SETTINGS, "epochs": 3})["id"]
    folder = TrainingJob.objects.get(pk=pk).folder / "snapshots"
    wait_in_log(restartable_worker, "pausing 120 s at snapshot:2")
    assert list(folder.glob("epoch_2.safetensors.tmp-*")), "the weights are being written under a temporary name"

    restartable_worker.kill()
    restartable_worker.start()
    job = wait_job(pk)

    assert job.status == "done", job.error
    assert "Resumed from the snapshot at epoch 1 " in log_text(job)
    assert not list(folder.glob("*.tmp-*")), "nothing half-written is left behind"
    assert sorted(job.snapshots.values_list("epoch", flat=True)) == [1.0, 2.0, 3.0]
    for snapshot in job.snapshots.all():
        assert load_file(job.folder / snapshot.path), f"epoch {snapshot.epoch} loads"


def test_a_job_that_keeps_losing_its_worker_ends_in_error_after_the_configured_attempts(
        restartable_worker: Worker, alice_api):
    from django.conf import settings as live_settings

    dataset = ready_digits(alice_api)
    restartable_worker.kill()
    restartable_worker.start(WORKBENCH_FAULT_PAUSE="snapshot:1=120")
    pk = start(alice_api, dataset, **SETTINGS)["id"]
    for attempt in range(1, live_settings.WORKBENCH_MAX_ATTEMPTS + 1):
        wait_in_log(restartable_worker, "pausing 120 s at snapshot:1")
        assert TrainingJob.objects.get(pk=pk).attempt == attempt
        restartable_worker.kill()
        restartable_worker.start(WORKBENCH_FAULT_PAUSE="snapshot:1=120")

    job = wait_for(lambda: TrainingJob.objects.filter(pk=pk, status="error").first(), 60, "the job to give up")
    assert f"failed {live_settings.WORKBENCH_MAX_ATTEMPTS} attempts in a row" in job.error
    assert "its worker restarted" in job.error


def test_a_job_that_runs_past_the_hard_time_limit_ends_in_error_saying_so(restartable_worker: Worker, alice_api):
    dataset = ready_digits(alice_api)
    restartable_worker.kill()
    restartable_worker.start(WORKBENCH_TASK_HARD_LIMIT="5")  # the thread pool ignores Celery's own limit
    pk = start(alice_api, dataset, **{**SETTINGS, "epochs": 500})["id"]

    job = wait_job(pk, timeout=60)

    assert job.status == "error"
    assert "ran past the hard time limit of 5 s" in job.error
    assert job.epoch < 500
    # The run writes that line when it next looks at its lease, which may be just after the job ended.
    wait_for(lambda: "stopped writing: It ran past the hard time limit" in log_text(job), 30, "the run's last log line")
