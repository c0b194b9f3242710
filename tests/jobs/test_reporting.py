"""The reporter stores each point once, even when a re-delivered task reports it again, and loses none
when the database refuses them for a while."""
from __future__ import annotations

import time

import pytest
from django.db import connection

from jobs.models import LogLine, MetricPoint, TrainingJob
from jobs.reporting import DatabaseReporter
from jobs.selectors import job_log_text
from tests.conftest import Worker, wait_for
from tests.jobs.test_training_flow import ready_colours, start, wait_job
from tests.results.test_export import _finished_job
from workbench.leases import Lease

pytestmark = pytest.mark.django_db(transaction=True)


def report(job, values: dict[int, float]) -> DatabaseReporter:  # type: ignore[no-untyped-def]
    reporter = DatabaseReporter(Lease(TrainingJob, job.pk, job.attempt, "test"))
    reporter.start()
    for step, value in values.items():
        reporter.metric(split="train", name="loss", value=value, epoch=step / 10, step=step)
        reporter.metric(split="val", name="accuracy", value=value / 10, epoch=step / 10, step=step)
    reporter.using_device("cpu")
    reporter.close()
    return reporter


def test_it_stores_every_point_once_and_keeps_the_first_of_a_repeat(alice):
    job = _finished_job(alice, status="running")

    report(job, {step: float(step) for step in range(1, 1501)})  # more than one INSERT's rows
    second = report(job, {1500: -1.0, 1501: 1501.0})  # a re-delivered task reports again

    stored = MetricPoint.objects.filter(job=job)
    assert stored.count() == 2 * 1501
    assert stored.get(split="train", name="loss", step=1500).value == 1500.0
    assert stored.get(split="train", name="loss", step=1501).value == 1501.0
    assert list(stored.filter(split="val").order_by("step").values_list("value", flat=True)[:3]) == [0.1, 0.2, 0.3]
    job.refresh_from_db()
    assert job.device_used == "cpu" and job.heartbeat_at is not None
    assert second.latest["train_loss"] == 1501.0


# --- a database that refuses the points --------------------------------------------------------

RETRY_SECONDS = "8"


def refuse_inserts(table: str) -> None:
    """The database refuses every new row of `table` (a real error from a trigger) until allow_inserts()."""
    statements = {
        "sqlite": [f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
                   "BEGIN SELECT RAISE(ABORT, 'the disk is full (test trigger)'); END"],
        "postgresql": ["CREATE OR REPLACE FUNCTION refuse_inserts() RETURNS trigger AS $$ BEGIN "
                       "RAISE EXCEPTION 'the disk is full (test trigger)'; END $$ LANGUAGE plpgsql",
                       f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION refuse_inserts()"],
    }
    with connection.cursor() as cursor:
        for statement in statements[connection.vendor]:
            cursor.execute(statement)


def allow_inserts(table: str) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"DROP TRIGGER IF EXISTS refuse_{table} ON {table}")
        else:
            cursor.execute(f"DROP TRIGGER IF EXISTS refuse_{table}")


def allow_points() -> None:
    allow_inserts("jobs_metricpoint")


@pytest.fixture
def points_refused(restartable_worker: Worker):  # type: ignore[no-untyped-def]
    """The database refuses every metric point (a real error from a trigger) until allow_points()."""
    restartable_worker.kill()
    restartable_worker.start(WORKBENCH_REPORT_RETRY_SECONDS=RETRY_SECONDS)
    refuse_inserts("jobs_metricpoint")
    yield restartable_worker
    allow_points()


def wait_refused(pk: int) -> TrainingJob:
    wait_for(lambda: "Cannot store reports" in job_log_text(TrainingJob(pk=pk)), 60, "the reporter to fail")
    return TrainingJob.objects.get(pk=pk)


def test_a_job_whose_points_cannot_be_stored_pauses_then_fails_saying_why(points_refused, alice_api):
    pk = start(alice_api, ready_colours(alice_api), epochs=500)["id"]
    paused = wait_refused(pk)

    wait_for(lambda: TrainingJob.objects.get(pk=pk).heartbeat_at > paused.heartbeat_at, 30,
             "the heartbeat to go on while the reporter retries")
    job = wait_job(pk, timeout=60)

    assert job.status == "error"
    assert f"its reports could not be stored for {RETRY_SECONDS} s" in job.error
    assert "the disk is full (test trigger)" in job.error
    assert not MetricPoint.objects.filter(job_id=pk).exists()


def test_a_job_can_be_aborted_while_its_reporter_retries(points_refused, alice_api):
    pk = start(alice_api, ready_colours(alice_api), epochs=500)["id"]
    wait_refused(pk)

    assert alice_api.post(f"/api/v1/jobs/{pk}/abort/").status_code == 200

    assert wait_job(pk, timeout=30).status == "aborted"


def test_a_job_goes_on_once_its_points_can_be_stored_again_and_loses_none(points_refused, alice_api):
    pk = start(alice_api, ready_colours(alice_api), epochs=6)["id"]
    wait_refused(pk)

    allow_points()
    job = wait_job(pk)

    assert job.status == "done", job.error
    assert "Reports are stored again; training goes on." in job_log_text(job)
    steps = sorted(MetricPoint.objects.filter(job_id=pk, split="train", name="loss").values_list("step", flat=True))
    assert steps == list(range(1, steps[-1] + 1)) and steps[-1] == job.epochs * 7  # 54 images, batches of 8


# --- a database that refuses the log lines -----------------------------------------------------

@pytest.fixture
def lines_refused():  # type: ignore[no-untyped-def]
    refuse_inserts("jobs_logline")
    yield
    allow_inserts("jobs_logline")


def test_lines_logged_while_the_database_refuses_them_are_stored_once_it_takes_them_in_order(
        alice, lines_refused, caplog):  # type: ignore[no-untyped-def]
    job = _finished_job(alice, status="running")
    reporter = DatabaseReporter(Lease(TrainingJob, job.pk, job.attempt, "test"), retry_seconds=60)
    reporter.log("Logged before the start.")  # waits for the writer
    reporter.log("Logged before the start, too.")
    reporter.start()
    wait_for(lambda: "cannot write" in caplog.text, 30, "the reporter to find its lines refused")
    time.sleep(0.3)  # the reporter logs why it pauses, then retries: still refused
    reporter.log("Logged while the lines are refused.")
    time.sleep(0.3)
    assert not LogLine.objects.filter(job=job).exists()

    allow_inserts("jobs_logline")
    reporter.close()

    # One row a line (PostgreSQL's error text runs over several lines of its own).
    lines = list(LogLine.objects.filter(job=job).order_by("id").values_list("text", flat=True))
    assert lines[:2] == ["Logged before the start.", "Logged before the start, too."]
    assert lines[2].startswith("Cannot store reports (") and "the disk is full (test trigger)" in lines[2]
    assert lines[3:] == ["Logged while the lines are refused.", "Reports are stored again; training goes on."]


def test_a_run_that_lost_its_job_stores_only_its_word_on_the_loss(alice):  # type: ignore[no-untyped-def]
    job = _finished_job(alice, status="running")
    reporter = DatabaseReporter(Lease(TrainingJob, job.pk, job.attempt, "test"))
    reporter.start()
    reporter.log("Stored while the run holds its job.")
    wait_for(lambda: LogLine.objects.filter(job=job).exists(), 30, "the first line")
    TrainingJob.objects.filter(pk=job.pk).update(attempt=job.attempt + 1)  # taken back, run again
    reporter.metric(split="train", name="loss", value=1.0, epoch=0.1, step=1)
    reporter.log("Logged after the job was taken back.")
    wait_for(lambda: reporter.lease.lost.is_set(), 30, "the run to find its job taken")
    reporter.log("Attempt 1 stopped writing: a newer attempt holds it.", fenced=False)
    reporter.close()
    reporter.log("Logged after the close.", fenced=False)

    lines = [line.split(" ", 1)[1] for line in job_log_text(job).splitlines()]
    assert lines == ["Stored while the run holds its job.", "Attempt 1 stopped writing: a newer attempt holds it.",
                     "Logged after the close."]
    assert not MetricPoint.objects.filter(job=job).exists()
