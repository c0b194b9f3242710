"""The classify, inspect and compressed-model classify pages when no serving worker answers: the
server's reason in a box above the form, with its 503 or 504, and no result.

The broker is stood in for (the true edge): it takes the request and no worker ever answers it, or
it refuses it. The real serving worker's absence is the browser test's (tests/browser/test_serving_unavailable.py).
"""
from __future__ import annotations

import io
import uuid
from datetime import timedelta

import pytest
from celery.result import AsyncResult
from django.utils import timezone

from results.models import Compression
from tests.conftest import make_image
from tests.results.test_export import _finished_job
from workers import services

pytestmark = pytest.mark.django_db


def image() -> io.BytesIO:
    file = io.BytesIO(make_image((30, 200, 40), size=(8, 8)))
    file.name = "green.png"
    return file


@pytest.fixture
def unanswered(monkeypatch, settings):  # type: ignore[no-untyped-def]
    """Requests are queued and never answered; a serving worker has reported, so it is busy: a 504."""
    settings.WORKBENCH_SERVING_TIMEOUT = 0.5
    settings.WORKBENCH_SERVING_RESEND_SECONDS = 0.5
    monkeypatch.setattr("workbench.queue.enqueue", lambda *args, **kwargs: AsyncResult(str(uuid.uuid4())))
    services.worker_report(report=services.WorkerReport(
        name="celery@serving-busy", host="serving-busy", pid=1, queues=["infer"], concurrency=1,
        started_at=timezone.now() - timedelta(minutes=1), serving=None))


@pytest.fixture
def broker_down(monkeypatch):  # type: ignore[no-untyped-def]
    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ConnectionError("the broker is down")

    monkeypatch.setattr("workbench.queue.enqueue", refuse)


def the_box(page: str) -> str:
    start = page.index('id="serving-unavailable">') + len('id="serving-unavailable">')
    return page[start:page.index("</p>", start)]


def test_the_classify_page_shows_the_504_of_serving_workers_that_did_not_answer(alice, client, unanswered):
    job = _finished_job(alice)
    client.force_login(alice)

    response = client.post(f"/jobs/{job.pk}/classify/", {"image": image()})

    assert response.status_code == 504
    page = response.content.decode()
    assert 'class="flash flash-error error" role="alert"' in page
    assert the_box(page).startswith("The serving workers did not answer within 0.5 s: they are all busy")
    assert 'id="classify-result"' not in page and "has-error" not in page


def test_the_inspect_page_shows_the_503_of_a_request_that_could_not_be_queued(alice, client, broker_down):
    job = _finished_job(alice)
    client.force_login(alice)

    response = client.post(f"/jobs/{job.pk}/inspect/", {"image": image()})

    assert response.status_code == 503
    assert the_box(response.content.decode()).startswith(
        "The request could not be queued for the serving workers (ConnectionError: the broker is down)")


def test_the_compressed_models_classify_shows_the_servers_reason(alice, client, unanswered):
    job = _finished_job(alice)
    compression = Compression.objects.create(job=job, snapshot=job.snapshots.first(), method="prune", status="done")
    client.force_login(alice)

    response = client.post(f"/jobs/{job.pk}/compressions/{compression.pk}/", {"image": image()})

    assert response.status_code == 504
    assert the_box(response.content.decode()).startswith("The serving workers did not answer within 0.5 s")


def test_a_page_that_classified_shows_no_box(alice, client):
    job = _finished_job(alice)
    client.force_login(alice)

    assert 'id="serving-unavailable"' not in client.get(f"/jobs/{job.pk}/classify/").content.decode()
