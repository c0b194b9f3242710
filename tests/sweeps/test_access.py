"""A sweep is its owner's: anyone else gets a 404 (never a 403); staff see all."""
from __future__ import annotations

import pytest

from datasets.models import Dataset
from sweeps.models import Sweep

pytestmark = pytest.mark.django_db


@pytest.fixture
def alices_sweep(alice) -> Sweep:  # type: ignore[no-untyped-def]
    dataset = Dataset.objects.create(owner=alice, name="colours", source="example", source_name="x", image_width=8,
                                     image_height=8, channels=3, resize_mode="squash", val_percent=10,
                                     test_percent=0, seed=0, status="ready", classes=["a", "b"])
    return Sweep.objects.create(owner=alice, name="alice's", dataset=dataset, network="mlp", grid={"seed": [1, 2]},
                                trials_total=2, study_name="access-test", status="running")


def test_it_answers_404_for_another_users_sweep(bob_api, alices_sweep):
    for response in (bob_api.get(f"/api/v1/sweeps/{alices_sweep.pk}/"),
                     bob_api.post(f"/api/v1/sweeps/{alices_sweep.pk}/abort/"),
                     bob_api.post(f"/api/v1/sweeps/{alices_sweep.pk}/train-best/", {"epochs": 3}, format="json")):
        assert response.status_code == 404
        assert response.json()["error"]
    assert bob_api.get("/api/v1/sweeps/").json()["count"] == 0
    assert Sweep.objects.get(pk=alices_sweep.pk).status == "running"


def test_it_hides_another_users_sweep_page(client, bob, alices_sweep):
    client.force_login(bob)
    assert client.get(f"/sweeps/{alices_sweep.pk}/").status_code == 404


def test_it_lists_the_owners_sweeps_paginated_and_all_of_them_to_staff(alice_api, staff, alices_sweep):
    body = alice_api.get("/api/v1/sweeps/?page_size=1").json()
    assert body["count"] == 1 and body["results"][0]["id"] == alices_sweep.pk
    assert set(body) == {"count", "next", "previous", "results"}
    detail = alice_api.get(f"/api/v1/sweeps/{alices_sweep.pk}/").json()
    assert detail["jobs"] == [] and detail["best_job"] is None and detail["progress"] == 0
    from rest_framework.test import APIClient

    staff_api = APIClient()
    staff_api.force_authenticate(staff)
    assert staff_api.get(f"/api/v1/sweeps/{alices_sweep.pk}/").status_code == 200


def test_it_lets_a_dataset_go_with_a_sweep_that_has_no_job_left(alice_api, alices_sweep):
    response = alice_api.delete(f"/api/v1/datasets/{alices_sweep.dataset_id}/")
    assert response.status_code == 204
    assert not Sweep.objects.exists()
