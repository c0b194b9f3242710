"""The reporter's writer stores each point once, even when a re-delivered task reports it again."""
from __future__ import annotations

import pytest

from jobs.models import MetricPoint, TrainingJob
from jobs.reporting import DatabaseReporter
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
