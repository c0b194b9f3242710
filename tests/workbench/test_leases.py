"""Fencing and taking back: a stale attempt writes nothing; a restarted worker takes back its own work at once."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import services
from jobs.models import MetricPoint, TrainingJob
from jobs.reporting import DatabaseReporter
from jobs.selectors import job_log_text
from tests.results.test_export import _finished_job
from workbench import leases, recovery

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def sent(monkeypatch):  # type: ignore[no-untyped-def]
    """The broker is the edge here: what a take-back queues is recorded, not handed to a worker that
    another test may have left running (it would claim the job under the test's feet)."""
    calls: list[tuple[str, list[int]]] = []
    monkeypatch.setattr(recovery.current_app, "send_task", lambda name, args: calls.append((name, args)))
    return calls


def queued_job(owner):  # type: ignore[no-untyped-def]
    job = _finished_job(owner, status="queued")
    job.folder.mkdir(parents=True, exist_ok=True)
    return job


def silence(job: TrainingJob) -> None:
    TrainingJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))


def report_point(lease: leases.Lease, step: int) -> None:
    reporter = DatabaseReporter(lease)
    reporter.start()
    reporter.metric(split="train", name="loss", value=float(step), epoch=step / 10, step=step)
    reporter.log(f"Reached step {step}.")
    reporter.close()


def test_a_stale_attempt_cannot_overwrite_the_newer_one(alice, sent):
    job = queued_job(alice)
    stale = leases.lease_claim(TrainingJob, job.pk, stop_field="abort_requested")
    silence(job)
    assert recovery.work_take_back(models_=[TrainingJob]) == 1
    assert sent == [("jobs.train", [job.pk])]
    newer = leases.lease_claim(TrainingJob, job.pk, stop_field="abort_requested")
    assert (stale.attempt, newer.attempt) == (1, 2)

    services._finish(stale, "error", "the stale run's verdict")
    report_point(stale, step=7)
    report_point(newer, step=8)

    job.refresh_from_db()
    assert (job.status, job.attempt, job.error) == ("running", 2, "")
    assert list(MetricPoint.objects.filter(job=job).values_list("step", flat=True)) == [8]
    assert "Reached step 8." in job_log_text(job) and "Reached step 7." not in job_log_text(job)
    assert stale.lost.is_set() and not newer.lost.is_set()
    with pytest.raises(leases.LeaseLost):
        stale.check()
    services._finish(newer, "done", "")
    assert TrainingJob.objects.get(pk=job.pk).status == "done"


def test_a_starting_worker_takes_back_what_its_earlier_process_held_at_once(alice):
    mine, other = queued_job(alice), queued_job(alice)
    TrainingJob.objects.filter(pk=mine.pk).update(status="running", attempt=1, heartbeat_at=timezone.now(),
                                                  held_by="w1@host pid 999999")
    TrainingJob.objects.filter(pk=other.pk).update(status="running", attempt=1, heartbeat_at=timezone.now(),
                                                   held_by="w10@host pid 999999")

    assert recovery.work_take_back(worker="w1@host") == 1

    mine.refresh_from_db()
    other.refresh_from_db()
    assert (mine.status, mine.retries) == ("queued", 1)
    assert other.status == "running", "another worker's fresh work is left alone"
    assert "its worker restarted (w1@host pid 999999 is gone)" in job_log_text(mine)


def test_work_lost_too_often_in_a_row_ends_in_error_saying_why(alice, settings):
    settings.WORKBENCH_MAX_ATTEMPTS = 2
    job = queued_job(alice)
    for attempt in (1, 2):
        assert leases.lease_claim(TrainingJob, job.pk, stop_field="abort_requested").attempt == attempt
        silence(job)
        recovery.work_take_back(models_=[TrainingJob])

    job.refresh_from_db()
    assert job.status == "error"
    assert job.error.startswith("It failed 2 attempts in a row: each time the worker running it was lost")
    assert "no heartbeat from" in job.error


def test_an_abort_asked_before_the_worker_died_ends_the_job_aborted_not_queued(alice):
    job = queued_job(alice)
    leases.lease_claim(TrainingJob, job.pk, stop_field="abort_requested")
    TrainingJob.objects.filter(pk=job.pk).update(abort_requested=True)
    silence(job)

    recovery.work_take_back(models_=[TrainingJob])

    assert TrainingJob.objects.get(pk=job.pk).status == "aborted"


def test_a_dataset_and_every_result_kind_can_be_taken_back():
    from datasets.models import Dataset
    from results.models import BatchClassification, Compression, Evaluation, Export

    taken = {kind.model for kind in recovery.kinds()}

    assert {TrainingJob, Dataset, Evaluation, BatchClassification, Export, Compression} <= taken
