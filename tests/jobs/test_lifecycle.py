"""Abort, a killed worker, a diverging loss, resume: the job never lies about its state."""
from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest
from django.conf import settings

from jobs.models import LogLine, MetricPoint, TrainingJob
from jobs.selectors import job_log_text
from jobs.tasks import train_job
from tests.conftest import start_process, wait_for
from tests.jobs.test_training_flow import ready_colours, start, wait_job
from workbench import processes

pytestmark = pytest.mark.django_db(transaction=True)


def wait_running_with_points(pk: int, points: int = 3) -> None:
    wait_for(lambda: MetricPoint.objects.filter(job_id=pk).count() >= points, 120, f"job {pk} to report")


def test_it_aborts_a_running_job_within_seconds(celery_worker, alice_api):
    dataset = ready_colours(alice_api)
    pk = start(alice_api, dataset, epochs=500)["id"]
    wait_running_with_points(pk)

    response = alice_api.post(f"/api/v1/jobs/{pk}/abort/")

    assert response.status_code == 200
    job = wait_job(pk, timeout=30)
    assert job.status == "aborted"
    assert job.epoch < 500
    assert "Aborted." in alice_api.get(f"/api/v1/jobs/{pk}/").json()["log_tail"][-1]


def test_it_aborts_a_queued_job_before_it_starts(alice_api, alice):
    from datasets.models import Dataset

    dataset = Dataset.objects.create(owner=alice, name="d", source="example", source_name="x", image_width=8,
                                     image_height=8, channels=3, resize_mode="squash", val_percent=10,
                                     test_percent=0, seed=0)
    job = TrainingJob.objects.create(owner=alice, dataset=dataset, name="q", network="mlp", network_spec={})

    alice_api.post(f"/api/v1/jobs/{job.pk}/abort/")

    job.refresh_from_db()
    assert job.status == "aborted"
    assert alice_api.post(f"/api/v1/jobs/{job.pk}/abort/").status_code == 409


def test_it_fails_a_diverging_run_with_a_message_that_says_so(celery_worker, alice_api):
    dataset = ready_colours(alice_api)

    job = wait_job(start(alice_api, dataset, epochs=20, learning_rate=10, network="mlp")["id"])

    assert job.status == "error"
    assert "diverged" in job.error and "learning rate" in job.error and "try 1 or lower" in job.error


@pytest.fixture
def doomed_worker():  # type: ignore[no-untyped-def]
    """A second worker on a private queue, there to be killed with SIGKILL."""
    log = Path(settings.DATA_DIR) / "doomed-worker.log"
    args = processes.worker_command(queues="doomed", name=f"doomed-{os.getpid()}", concurrency=1)
    proc = start_process(args, log, processes.worker_ready(log), "doomed worker")
    yield proc
    processes.stop(proc)


def doomed_job(client, owner, epochs: int) -> TrainingJob:  # type: ignore[no-untyped-def]
    """A job trained by the doomed worker, once it has reported a few epochs (and snapshots)."""
    from networks.builtin import builtin_spec

    job = TrainingJob.objects.create(owner=owner, dataset=ready_colours(client), name="doomed", network="mlp",
                                     epochs=epochs, batch_size=8, network_spec=builtin_spec("mlp", (3, 8, 8), 3))
    job.folder.mkdir(parents=True, exist_ok=True)
    train_job.apply_async(args=[job.pk], queue="doomed")
    wait_running_with_points(job.pk, points=20)
    return job


def test_a_job_whose_worker_dies_for_good_is_taken_back_by_another_after_the_heartbeat_timeout(
        celery_worker, doomed_worker, alice_api, alice):
    job = doomed_job(alice_api, alice, epochs=60)
    held = alice_api.get(f"/api/v1/jobs/{job.pk}/").json()["worker"]

    doomed_worker.send_signal(signal.SIGKILL)
    doomed_worker.wait()
    finished = wait_job(job.pk, timeout=settings.HEARTBEAT_TIMEOUT + 120)

    assert finished.status == "done", finished.error
    assert finished.attempt == 2
    body = alice_api.get(f"/api/v1/jobs/{job.pk}/").json()
    assert body["attempt"] == 2
    assert (held, body["worker"]) == (f"doomed-{os.getpid()}@{socket.gethostname()}",
                                      f"{celery_worker.name}@{socket.gethostname()}"), "the worker that took it over"
    log = job_log_text(finished)
    assert f"no heartbeat from doomed-{os.getpid()}" in log and "Queued again by itself to resume from" in log


def test_a_stalled_run_that_comes_back_after_it_was_taken_back_writes_nothing_more(
        celery_worker, doomed_worker, alice_api, alice):
    job = doomed_job(alice_api, alice, epochs=200)

    doomed_worker.send_signal(signal.SIGSTOP)  # stalled, not dead: its run will wake up later
    try:
        wait_for(lambda: TrainingJob.objects.filter(pk=job.pk, attempt=2, status="running").exists(),
                 settings.HEARTBEAT_TIMEOUT + 60, "another worker to take the job over")
    finally:
        doomed_worker.send_signal(signal.SIGCONT)
    try:
        wait_for(lambda: "Attempt 1 stopped writing" in job_log_text(job), 90, "the stale run to notice")
    except AssertionError as exc:  # say what the stalled worker was doing
        worker_log = Path(settings.DATA_DIR) / "doomed-worker.log"
        raise AssertionError(f"{exc}\njob log:\n{job_log_text(job)[-2000:]}\ndoomed worker:\n"
                             f"{worker_log.read_text(errors='replace')[-4000:]}") from None
    finished = wait_job(job.pk, timeout=120)

    assert finished.status == "done", finished.error
    assert finished.attempt == 2
    steps = sorted(MetricPoint.objects.filter(job_id=job.pk, split="train", name="loss").values_list("step", flat=True))
    assert steps == list(range(1, steps[-1] + 1)), "every step, once"
    assert finished.epoch == 200


def test_it_resumes_an_aborted_job_from_its_last_snapshot(celery_worker, alice_api):
    dataset = ready_colours(alice_api)
    pk = start(alice_api, dataset, epochs=400)["id"]
    wait_for(lambda: TrainingJob.objects.get(pk=pk).snapshots.count() >= 2, 120, "two snapshots")
    alice_api.post(f"/api/v1/jobs/{pk}/abort/")
    aborted = wait_job(pk)
    last = aborted.snapshots.order_by("-epoch").first().epoch
    TrainingJob.objects.filter(pk=pk).update(epochs=int(last) + 2)

    response = alice_api.post(f"/api/v1/jobs/{pk}/resume/")

    assert response.status_code == 200, response.json()
    job = wait_job(pk)
    assert job.status == "done", job.error
    assert job.epoch == int(last) + 2
    assert "Resumed from the snapshot at epoch" in "\n".join(alice_api.get(f"/api/v1/jobs/{pk}/").json()["log_tail"])


def test_it_refuses_to_delete_a_running_job_and_deletes_a_finished_one(celery_worker, alice_api):
    dataset = ready_colours(alice_api)
    pk = start(alice_api, dataset, epochs=500)["id"]
    wait_running_with_points(pk)

    assert alice_api.delete(f"/api/v1/jobs/{pk}/").status_code == 409
    alice_api.post(f"/api/v1/jobs/{pk}/abort/")
    job = wait_job(pk)
    folder = job.folder
    assert "Aborted." in job_log_text(job)

    assert alice_api.delete(f"/api/v1/jobs/{pk}/").status_code == 204
    assert not TrainingJob.objects.filter(pk=pk).exists()
    assert not folder.exists()
    assert not MetricPoint.objects.filter(job_id=pk).exists()
    assert not LogLine.objects.filter(job_id=pk).exists()


def test_it_clones_a_job_into_a_new_queued_job(celery_worker, alice_api):
    dataset = ready_colours(alice_api)
    pk = start(alice_api, dataset, epochs=1, learning_rate=0.02, optimizer="adam")["id"]
    wait_job(pk)

    response = alice_api.post(f"/api/v1/jobs/{pk}/clone/")

    assert response.status_code == 201
    clone = response.json()
    assert clone["id"] != pk and clone["name"].endswith("(clone)")
    assert (clone["learning_rate"], clone["optimizer"], clone["epochs"]) == (0.02, "adam", 1)
    assert wait_job(clone["id"]).status == "done"


def test_it_refuses_to_delete_a_dataset_a_job_uses(celery_worker, alice_api):
    dataset = ready_colours(alice_api)
    wait_job(start(alice_api, dataset, epochs=1)["id"])

    response = alice_api.delete(f"/api/v1/datasets/{dataset.pk}/")

    assert response.status_code == 409
    assert "training job" in response.json()["error"]
