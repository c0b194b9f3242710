"""Result work whose worker is killed finishes by itself once the worker is back, on a new attempt."""
from __future__ import annotations

import pytest

from results.models import Evaluation, Export
from tests.conftest import Worker, wait_for, wait_in_log
from tests.jobs.test_training_flow import ready_colours, start, wait_job

pytestmark = pytest.mark.django_db(transaction=True)


def done_job(client):  # type: ignore[no-untyped-def]
    job = wait_job(start(client, ready_colours(client), epochs=2)["id"])
    assert job.status == "done", job.error
    return job


def killed_while(worker: Worker, fault: str) -> None:
    """Restart the worker so that it pauses at `fault`; once it is there, SIGKILL it and start it as usual."""
    wait_in_log(worker, f"at {fault}")
    worker.kill()
    worker.start()


def test_an_evaluation_killed_half_way_finishes_by_itself(restartable_worker: Worker, alice_api):
    job = done_job(alice_api)
    restartable_worker.kill()
    restartable_worker.start(WORKBENCH_FAULT_PAUSE="progress:results.evaluation=120")

    pk = alice_api.post(f"/api/v1/jobs/{job.pk}/evaluate/", {"split": "val"}, format="json").json()["id"]
    killed_while(restartable_worker, "progress:results.evaluation")
    evaluation = wait_for(lambda: (e := Evaluation.objects.get(pk=pk)).is_finished and e, 60, "the evaluation")

    assert evaluation.status == "done", evaluation.error
    assert evaluation.attempt == 2
    body = alice_api.get(f"/api/v1/jobs/{job.pk}/evaluations/{pk}/").json()
    assert body["attempt"] == 2 and body["status"] == "done"
    assert sum(map(sum, evaluation.result["confusion"])) == job.dataset.split_counts["val"]


def test_an_export_killed_while_it_runs_finishes_by_itself(restartable_worker: Worker, alice_api):
    job = done_job(alice_api)
    restartable_worker.kill()
    restartable_worker.start(WORKBENCH_FAULT_PAUSE="claimed:results.export=120")

    pk = alice_api.post(f"/api/v1/jobs/{job.pk}/export/", {"format": "archive"}, format="json").json()["id"]
    killed_while(restartable_worker, "claimed:results.export")
    export = wait_for(lambda: (e := Export.objects.get(pk=pk)).is_finished and e, 60, "the export")

    assert export.status == "done", export.error
    assert export.attempt == 2
    assert (job.folder / export.path).stat().st_size == export.size_bytes > 0
