"""The jobs list knows each job's sweep: `sweep` and `params` in every row, `?sweep=` to filter,
read in the same queries whatever the page's length."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sweeps.models import Sweep, Trial
from tests.workbench.test_lists import dataset_of, jobs_of

pytestmark = pytest.mark.django_db


def sweep_of(owner, count: int) -> Sweep:  # type: ignore[no-untyped-def]
    dataset = dataset_of(owner, name=f"data {count}")
    sweep = Sweep.objects.create(owner=owner, name=f"sweep {count}", dataset=dataset, network="mlp",
                                 grid={"seed": list(range(count))}, trials_total=count, study_name=f"s-{count}")
    for number, job in enumerate(jobs_of(owner, count, dataset)):
        Trial.objects.create(sweep=sweep, job=job, number=number, params={"seed": number})
    return sweep


def queries(client, url: str) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.json()
    return len(captured), response.json()


def test_it_filters_jobs_by_sweep_and_shows_their_params(alice, alice_api):
    small, large = sweep_of(alice, 2), sweep_of(alice, 12)
    jobs_of(alice, 3)  # not in any sweep

    few, body = queries(alice_api, f"/api/v1/jobs/?sweep={small.pk}")
    many, body_large = queries(alice_api, f"/api/v1/jobs/?sweep={large.pk}")

    assert body["count"] == 2 and {row["sweep"] for row in body["results"]} == {small.pk}
    assert sorted(row["params"]["seed"] for row in body_large["results"]) == list(range(12))
    assert few == many
    everything = alice_api.get("/api/v1/jobs/").json()
    assert everything["count"] == 17
    assert sum(row["sweep"] is None and row["params"] is None for row in everything["results"]) == 3
    assert alice_api.get("/api/v1/jobs/?sweep=0").status_code == 400
