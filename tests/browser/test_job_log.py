"""The job page's log grows from the event stream: new lines show without a reload and without a
request for the job per status event."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from datasets.models import Dataset
from jobs.models import LogLine, TrainingJob
from live import wakeup
from tests.browser.conftest import log_in
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def running_job(owner) -> TrainingJob:  # type: ignore[no-untyped-def]
    """A job that looks like it runs (no worker: the test writes what a worker would)."""
    dataset = Dataset.objects.create(owner=owner, name="digits", source="example", source_name="x", image_width=28,
                                     image_height=28, channels=1, resize_mode="squash", val_percent=20,
                                     test_percent=0, seed=0, status="ready", classes=[str(i) for i in range(10)])
    job = TrainingJob.objects.create(owner=owner, dataset=dataset, name="live log", network="lenet", network_spec={},
                                     status=TrainingJob.Status.RUNNING, started_at=timezone.now(),
                                     heartbeat_at=timezone.now() + timedelta(hours=1))
    LogLine.objects.create(job=job, at=at(0), text="Started.")
    return job


def at(second: int) -> datetime:
    return datetime(2026, 1, 1, 12, 0, second, tzinfo=UTC)


def report(job: TrainingJob, *, progress: float, line: str) -> None:
    LogLine.objects.create(job=job, at=at(1), text=line)
    TrainingJob.objects.filter(pk=job.pk).update(progress=progress)
    wakeup.notify(job.pk)


def test_the_job_page_shows_new_log_lines_without_a_reload_or_a_request_per_status(
        page, alice):  # type: ignore[no-untyped-def]
    job = running_job(alice)
    detail = f"/api/v1/jobs/{job.pk}/"
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    log_in(page, "alice", "alice-password")
    page.goto(f"/jobs/{job.pk}/")
    page.evaluate("() => { window.__sameDocument = true; }")
    assert "Started." in page.text_content("#log-tail")

    for step in range(1, 4):
        report(job, progress=step / 10, line=f"Epoch {step} done.")
        wait_for(lambda: f"{step * 10}%" == page.text_content("#progress-text"), 30, f"status event {step}")
        wait_for(lambda: f"Epoch {step} done." in page.text_content("#log-tail"), 30, f"log line {step}")
    page.wait_for_timeout(1500)  # what a request per status event (it waited a second) would have sent

    shown = page.text_content("#log-tail").splitlines()
    assert shown == ["12:00:00 Started.", "12:00:01 Epoch 1 done.", "12:00:01 Epoch 2 done.", "12:00:01 Epoch 3 done."]
    assert page.evaluate("() => window.__sameDocument === true"), "the page reloaded"
    assert [url for url in requested if url.endswith(detail)] == [], "the page asked for the job per status event"
    assert any(url.split("?")[0].endswith(f"{detail}events/") for url in requested)
