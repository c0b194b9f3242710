"""The reporter stores each point once, even when a re-delivered task reports it again, and loses none
when the database refuses them for a while."""
from __future__ import annotations

import pytest
from django.db import connection

from jobs.models import MetricPoint, TrainingJob
from jobs.reporting import DatabaseReporter
from tests.conftest import Worker, wait_for
from tests.jobs.test_training_flow import ready_colours, start, wait_job
from tests.results.test_export import _finished_job
from workbench.leases import Lease

pytestmark = pytest.mark.django_db(transaction=True)


def report(job, tmp_path, values: dict[int, float]) -> DatabaseReporter:  # type: ignore[no-untyped-def]
    reporter = DatabaseReporter(Lease(TrainingJob, job.pk, job.attempt, "test"), tmp_path)
    reporter.start()
    for step, value in values.items():
        reporter.metric(split="train", name="loss", value=value, epoch=step / 10, step=step)
        reporter.metric(split="val", name="accuracy", value=value / 10, epoch=step / 10, step=step)
    reporter.using_device("cpu")
    reporter.close()
    return reporter


def test_it_stores_every_point_once_and_keeps_the_first_of_a_repeat(alice, tmp_path):
    job = _finished_job(alice, status="running")

    report(job, tmp_path, {step: float(step) for step in range(1, 1501)})  # more than one INSERT's rows
    second = report(job, tmp_path, {1500: -1.0, 1501: 1501.0})  # a re-delivered task reports again

    stored = MetricPoint.objects.filter(job=job)
    assert stored.count() == 2 * 1501
    assert stored.get(split="train", name="loss", step=1500).value == 1500.0
    assert stored.get(split="train", name="loss", step=1501).value == 1501.0
    assert list(stored.filter(split="val").order_by("step").values_list("value", flat=True)[:3]) == [0.1, 0.2, 0.3]
    job.refresh_from_db()
    assert job.device_used == "cpu" and job.heartbeat_at is not None
    assert second.latest["train_loss"] == 1501.0


# --- a database that refuses the points --------------------------------------------------------

_TRIGGERS = {
    "sqlite": ["CREATE TRIGGER refuse_points BEFORE INSERT ON jobs_metricpoint "
               "BEGIN SELECT RAISE(ABORT, 'the disk is full (test trigger)'); END"],
    "postgresql": ["CREATE OR REPLACE FUNCTION refuse_points() RETURNS trigger AS $$ BEGIN "
                   "RAISE EXCEPTION 'the disk is full (test trigger)'; END $$ LANGUAGE plpgsql",
                   "CREATE TRIGGER refuse_points BEFORE INSERT ON jobs_metricpoint "
                   "FOR EACH ROW EXECUTE FUNCTION refuse_points()"],
}
RETRY_SECONDS = "8"


def allow_points() -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("DROP TRIGGER IF EXISTS refuse_points ON jobs_metricpoint")
        else:
            cursor.execute("DROP TRIGGER IF EXISTS refuse_points")


@pytest.fixture
def points_refused(restartable_worker: Worker):  # type: ignore[no-untyped-def]
    """The database refuses every metric point (a real error from a trigger) until allow_points()."""
    restartable_worker.kill()
    restartable_worker.start(WORKBENCH_REPORT_RETRY_SECONDS=RETRY_SECONDS)
    with connection.cursor() as cursor:
        for statement in _TRIGGERS[connection.vendor]:
            cursor.execute(statement)
    yield restartable_worker
    allow_points()


def wait_refused(pk: int) -> TrainingJob:
    log = TrainingJob.objects.get(pk=pk).folder / "log.txt"
    wait_for(lambda: log.exists() and "Cannot store reports" in log.read_text(), 60, "the reporter to fail")
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
    assert "Reports are stored again; training goes on." in (job.folder / "log.txt").read_text()
    steps = sorted(MetricPoint.objects.filter(job_id=pk, split="train", name="loss").values_list("step", flat=True))
    assert steps == list(range(1, steps[-1] + 1)) and steps[-1] == job.epochs * 7  # 54 images, batches of 8
