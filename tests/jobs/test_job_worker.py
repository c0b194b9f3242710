"""Which worker runs a job: `worker` in the jobs API and on the job page, from the run's owner string."""
from __future__ import annotations

import pytest

from jobs.models import TrainingJob
from tests.results.test_export import _finished_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def running_job(alice):  # type: ignore[no-untyped-def]
    job = _finished_job(alice, status="running")
    TrainingJob.objects.filter(pk=job.pk).update(attempt=1, held_by="gpu-b@host-b pid 4321")
    return job


def test_the_api_names_the_worker_that_holds_a_job(alice_api, running_job):
    detail = alice_api.get(f"/api/v1/jobs/{running_job.pk}/").json()
    listed = alice_api.get("/api/v1/jobs/").json()["results"]

    assert detail["worker"] == "gpu-b@host-b"
    assert detail["held_by"] == "gpu-b@host-b pid 4321"
    assert [j["worker"] for j in listed if j["id"] == running_job.pk] == ["gpu-b@host-b"]


def test_the_api_names_no_worker_for_a_job_that_never_ran(alice_api, alice):
    job = _finished_job(alice, status="queued")

    assert alice_api.get(f"/api/v1/jobs/{job.pk}/").json()["worker"] == ""


def test_it_cannot_be_set_through_the_api(alice_api, running_job):
    response = alice_api.patch(f"/api/v1/jobs/{running_job.pk}/", {"worker": "mine@here"}, format="json")

    running_job.refresh_from_db()
    assert response.status_code == 400 and "worker" in response.json()["error"]
    assert running_job.worker == "gpu-b@host-b"


def test_the_schema_documents_it_as_read_only(alice_api):
    schema = alice_api.get("/api/v1/schema/?format=json").json()["components"]["schemas"]

    worker = schema["JobOutput"]["properties"]["worker"]
    assert worker["readOnly"] is True and "Celery worker" in worker["description"]
    assert "worker" in schema["JobDetailOutput"]["properties"]


def test_the_job_page_shows_its_worker(client, alice, running_job):
    client.force_login(alice)

    page = client.get(f"/jobs/{running_job.pk}/").content.decode()

    assert ">worker gpu-b@host-b</span>" in page


def test_the_job_page_shows_no_worker_for_a_job_that_never_ran(client, alice):
    job = _finished_job(alice, status="queued")
    client.force_login(alice)

    page = client.get(f"/jobs/{job.pk}/").content.decode()

    assert 'id="job-worker" class="muted"' in page and "hidden>worker </span>" in page
