"""Looking is not touching: pages and the API show lost work as it is; the workers' reaper takes it back."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import TrainingJob
from jobs.selectors import job_log_text
from tests.conftest import wait_for
from tests.results.test_export import _finished_job
from workbench import recovery
from workbench.celery import app

pytestmark = pytest.mark.django_db(transaction=True)

# Silent for longer than this test process's timeout, not the session worker's (6 s): only this
# process could take the job back while the GETs run, and it must not.
TIMEOUT = 1


@pytest.fixture(autouse=True)
def sent(monkeypatch, settings):  # type: ignore[no-untyped-def]
    """What anything queues is recorded, not handed to a worker (it would claim the job)."""
    settings.HEARTBEAT_TIMEOUT = TIMEOUT
    calls: list[tuple[str, list[int]]] = []
    record = lambda name, args, **kw: calls.append((name, args))  # noqa: E731
    monkeypatch.setattr(recovery.current_app, "send_task", record)
    monkeypatch.setattr(app, "send_task", record)
    return calls


@pytest.fixture
def lost_job(alice):  # type: ignore[no-untyped-def]
    """alice's job, running on attempt 1, whose worker fell silent just now."""
    job = _finished_job(alice, status="running")
    TrainingJob.objects.filter(pk=job.pk).update(attempt=1, held_by="gone@host pid 1",
                                                 heartbeat_at=timezone.now() - timedelta(seconds=TIMEOUT + 1))
    return job


def row(job: TrainingJob) -> tuple[str, int, int, str]:
    job.refresh_from_db()
    return job.status, job.attempt, job.retries, job.held_by


def test_it_changes_nothing_when_pages_and_the_api_show_a_lost_job(client, alice, alice_api, lost_job, sent):
    client.force_login(alice)
    before = row(lost_job)

    for url in ("/", "/jobs/", f"/jobs/{lost_job.pk}/"):
        assert client.get(url).status_code == 200, url
        assert row(lost_job) == before, f"GET {url} took the job back"
    for url in ("/api/v1/jobs/", f"/api/v1/jobs/{lost_job.pk}/"):
        assert alice_api.get(url).status_code == 200, url
        assert row(lost_job) == before, f"GET {url} took the job back"

    assert before == ("running", 1, 0, "gone@host pid 1")
    assert sent == []


def test_the_job_page_and_the_api_say_a_lost_job_is_being_taken_back(client, alice, alice_api, lost_job):
    client.force_login(alice)

    page = client.get(f"/jobs/{lost_job.pk}/").content.decode()
    body = alice_api.get(f"/api/v1/jobs/{lost_job.pk}/").json()

    assert '<p class="muted" id="taken-back">' in page
    assert f"No heartbeat from its worker for over {TIMEOUT} s: the job is being taken back." in page
    assert (body["status"], body["stale"]) == ("running", True)


def test_a_beating_job_is_not_said_to_be_taken_back(client, alice, alice_api):
    job = _finished_job(alice, status="running")
    client.force_login(alice)

    page = client.get(f"/jobs/{job.pk}/").content.decode()

    assert '<p class="muted" id="taken-back" hidden>' in page
    assert alice_api.get(f"/api/v1/jobs/{job.pk}/").json()["stale"] is False


def test_asking_again_for_a_result_whose_worker_went_silent_takes_nothing_back(alice, alice_api, sent):
    from results.models import Evaluation

    done = _finished_job(alice)
    evaluation = Evaluation.objects.create(job=done, snapshot=done.snapshots.get(), split="val", status="running",
                                           attempt=1, heartbeat_at=timezone.now() - timedelta(seconds=TIMEOUT + 1))

    response = alice_api.post(f"/api/v1/jobs/{done.pk}/evaluate/", {"split": "val"}, format="json")

    assert response.json()["id"] == evaluation.pk
    evaluation.refresh_from_db()
    assert (evaluation.status, evaluation.attempt, evaluation.retries) == ("running", 1, 0)
    assert sent == []


def test_a_sweep_page_does_not_move_a_stalled_sweep_on(client, alice, alice_api, sent):
    from sweeps.models import Sweep

    dataset = _finished_job(alice).dataset
    sweep = Sweep.objects.create(owner=alice, name="s", dataset=dataset, network="mlp", grid={"seed": [1, 2]},
                                 trials_total=2, study_name="stalled")
    Sweep.objects.filter(pk=sweep.pk).update(created_at=timezone.now() - timedelta(hours=1))
    client.force_login(alice)

    assert client.get(f"/sweeps/{sweep.pk}/").status_code == 200
    assert alice_api.get(f"/api/v1/sweeps/{sweep.pk}/").status_code == 200

    assert sent == []


def test_the_workers_reaper_takes_the_lost_job_back(lost_job, sent):
    reaper = recovery.Reaper()  # what every worker starts once it is ready (workbench.signals)
    reaper.start()
    try:
        wait_for(lambda: row(lost_job)[0] == "queued", 10 * TIMEOUT, "the reaper to take the job back")
    finally:
        reaper.stop()

    assert row(lost_job)[:3] == ("queued", 1, 1)
    assert ("jobs.train", [lost_job.pk]) in wait_for(lambda: sent, 5, "the job to be queued again")
    assert "no heartbeat from gone@host pid 1" in job_log_text(lost_job)
