"""A sweep's base may carry the job's `augmentation`: checked once against the dataset, naming the key."""
from __future__ import annotations

import pytest

from sweeps.models import Sweep
from tests.jobs.test_augmentation_form import a_dataset


@pytest.mark.django_db
@pytest.mark.parametrize("augmentation,key", [({"rotate_degrees": 200}, "augmentation.rotate_degrees"),
                                              ({"hsv": {"hue": 0.1}}, "augmentation.hsv"),
                                              ("flip", "'augmentation' takes an object")])
def test_it_refuses_a_bad_base_augmentation_naming_the_key(alice, alice_api, augmentation, key):
    body = {"name": "s", "dataset": a_dataset(alice, channels=1).pk, "network": "lenet",
            "base": {"augmentation": augmentation}, "grid": {"learning_rate": [0.1, 0.01]}}

    response = alice_api.post("/api/v1/sweeps/", body, format="json")

    assert response.status_code == 400
    assert key in response.json()["error"]
    assert not Sweep.objects.exists()


@pytest.mark.django_db(transaction=True)  # the sweep's Optuna study opens its own connection
def test_it_keeps_a_good_base_augmentation(alice, alice_api):
    body = {"name": "s", "dataset": a_dataset(alice, channels=1).pk, "network": "lenet",
            "base": {"augmentation": {"rot90": True}}, "grid": {"learning_rate": [0.1, 0.01]}}

    response = alice_api.post("/api/v1/sweeps/", body, format="json")

    assert response.status_code == 201, response.json()
    assert Sweep.objects.get().base["augmentation"] == {"rot90": True}
