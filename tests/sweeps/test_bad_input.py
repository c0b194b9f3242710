"""A sweep that cannot run is refused before anything is queued: a 400 that names the field."""
from __future__ import annotations

from typing import Any

import pytest

from datasets.models import Dataset
from sweeps.models import Sweep

pytestmark = pytest.mark.django_db


@pytest.fixture
def dataset(alice) -> Dataset:  # type: ignore[no-untyped-def]
    return Dataset.objects.create(owner=alice, name="colours", source="example", source_name="x", image_width=8,
                                  image_height=8, channels=3, resize_mode="squash", val_percent=10, test_percent=0,
                                  seed=0, status="ready", classes=["a", "b"],
                                  split_counts={"train": 9, "val": 1, "test": 0})


def post(client, dataset: Dataset, **fields: Any) -> Any:  # type: ignore[no-untyped-def]
    body = {"name": "bad", "dataset": dataset.pk, "network": "mlp", "base": {"epochs": 1}, **fields}
    response = client.post("/api/v1/sweeps/", body, format="json")
    assert response.status_code == 400, response.json()
    assert not Sweep.objects.exists()
    return response.json()


def test_it_refuses_an_unknown_field_in_a_grid(alice_api, dataset):
    body = post(alice_api, dataset, grid={"learning_rate": [0.1], "colour": [1, 2]})
    assert "grid.colour" in body["detail"]
    assert "colour" in body["error"]


def test_it_refuses_an_unknown_field_in_a_search_space(alice_api, dataset):
    body = post(alice_api, dataset, search={"method": "random", "trials": 3, "space": {"speed": {"low": 1, "high": 2}}})
    assert "search.space.speed" in body["detail"]


def test_it_refuses_an_empty_grid(alice_api, dataset):
    assert "grid" in post(alice_api, dataset, grid={})["detail"]
    assert "grid.learning_rate" in post(alice_api, dataset, grid={"learning_rate": []})["detail"]


def test_it_refuses_a_range_that_runs_backwards(alice_api, dataset):
    body = post(alice_api, dataset, search={"method": "tpe", "trials": 3,
                                            "space": {"learning_rate": {"low": 0.5, "high": 0.01}}})
    assert "search.space.learning_rate" in body["detail"]
    assert "backwards" in body["error"]


def test_it_refuses_a_log_range_from_zero(alice_api, dataset):
    body = post(alice_api, dataset, search={"method": "random", "trials": 3,
                                            "space": {"weight_decay": {"low": 0, "high": 0.1, "log": True}}})
    assert "search.space.weight_decay" in body["detail"]


def test_it_refuses_more_trials_than_the_configured_maximum(alice_api, dataset, settings):
    settings.WORKBENCH_SWEEP_MAX_TRIALS = 5
    body = post(alice_api, dataset, search={"method": "random", "trials": 6,
                                            "space": {"learning_rate": {"low": 0.001, "high": 0.1}}})
    assert "search.trials" in body["detail"] and "at most 5" in body["error"]
    body = post(alice_api, dataset, grid={"learning_rate": [0.1, 0.01, 0.001], "batch_size": [8, 16]})
    assert "grid" in body["detail"] and "6 trials" in body["error"]


def test_it_refuses_neither_or_both_of_grid_and_search(alice_api, dataset):
    assert "grid" in post(alice_api, dataset)["detail"]
    search = {"method": "random", "trials": 2, "space": {"learning_rate": {"low": 0.001, "high": 0.1}}}
    assert "grid" in post(alice_api, dataset, grid={"learning_rate": [0.1]}, search=search)["detail"]


def test_it_checks_each_value_as_a_job_field_is_checked(alice_api, dataset):
    assert "grid.learning_rate" in post(alice_api, dataset, grid={"learning_rate": [0.1, 50]})["detail"]
    assert "grid.optimizer" in post(alice_api, dataset, grid={"optimizer": ["sgd", "lion"]})["detail"]
    assert "grid.batch_size" in post(alice_api, dataset, grid={"batch_size": [8, 2.5]})["detail"]
    assert "grid.network" in post(alice_api, dataset, grid={"network": ["mlp", "nonet"]})["detail"]
    body = post(alice_api, dataset, search={"method": "random", "trials": 2,
                                            "space": {"momentum": {"low": 0.5, "high": 1.5}}})
    assert "search.space.momentum" in body["detail"]
    assert "base.epochs" in post(alice_api, dataset, base={"epochs": 0}, grid={"seed": [1, 2]})["detail"]
    assert "base.colour" in post(alice_api, dataset, base={"colour": 1}, grid={"seed": [1, 2]})["detail"]


def test_it_refuses_bad_early_stopping(alice_api, dataset):
    grid = {"seed": [1, 2]}
    assert "early_stopping.metric" in post(alice_api, dataset, grid=grid,
                                           early_stopping={"method": "asha", "metric": "f1"})["detail"]
    assert "early_stopping.reduction_factor" in post(
        alice_api, dataset, grid=grid, early_stopping={"method": "asha", "reduction_factor": 1})["detail"]
    assert "max_concurrent" in post(alice_api, dataset, grid=grid, max_concurrent=0)["detail"]


def test_it_does_not_find_another_users_dataset(bob_api, dataset):
    body = post(bob_api, dataset, grid={"seed": [1, 2]})
    assert "dataset" in body["detail"]


def test_it_refuses_an_augmentation_the_dataset_cannot_take_before_any_trial(alice_api, dataset):
    Dataset.objects.filter(pk=dataset.pk).update(channels=1)
    body = post(alice_api, dataset, base={"epochs": 1, "augmentation": {"hsv": {"hue": 0.1}}},
                grid={"learning_rate": [0.1, 0.01]})
    assert "base.augmentation" in body["detail"] and "grayscale" in body["error"]
    assert "base.augmentation" in post(alice_api, dataset, base={"augmentation": [1]},
                                       grid={"learning_rate": [0.1]})["detail"]


@pytest.mark.django_db(transaction=True)  # Optuna makes its study through a connection of its own
def test_a_grid_from_the_job_form_becomes_a_sweep_whose_base_holds_every_other_setting(alice, client, dataset):
    client.force_login(alice)
    response = client.post("/jobs/new/", {
        "dataset": dataset.pk, "network": "mlp", "epochs": "1", "batch_size": "8", "optimizer": "sgd",
        "learning_rate": "0.1, 0.01", "momentum": "0.9", "weight_decay": "0", "lr_policy": "fixed",
        "lr_step_size": "5", "lr_gamma": "0.1", "seed": "0", "device": "auto", "val_interval": "1",
        "snapshot_interval": "1"})

    assert response.status_code == 302, response.content.decode()[:2000]
    sweep = Sweep.objects.get()
    assert sweep.trials_total == 2 and sweep.grid == {"learning_rate": [0.1, 0.01]}
    assert sweep.base["augmentation"] == {} and sweep.base["accumulate"] == 1 and "learning_rate" not in sweep.base


@pytest.mark.parametrize(("fields", "where"), [
    ({"search": {"method": "random", "trails": 50, "trials": 3, "space": {"learning_rate": {"low": 0.01, "high": 0.1}}}},
     "search.trails"),
    ({"search": {"method": "random", "trials": 3, "space": {"learning_rate": {"low": 0.01, "high": 0.1, "lg": True}}}},
     "search.space.learning_rate.lg"),
    ({"search": {"method": "random", "trials": 3, "space": {"optimizer": {"choices": ["sgd"], "weights": [1]}}}},
     "search.space.optimizer.weights"),
    ({"grid": {"learning_rate": [0.1]}, "early_stopping": {"method": "asha", "metrc": "val_loss"}},
     "early_stopping.metrc"),
])
def test_it_refuses_a_key_it_does_not_know_inside_search_and_early_stopping(alice_api, dataset, fields, where):
    body = post(alice_api, dataset, **fields)

    assert list(body["detail"]) == [where]
    assert f"'{where.split('.')[-1]}' is not a key" in body["error"]


def test_it_refuses_a_field_it_does_not_know_on_the_sweep_itself(alice_api, dataset):
    body = post(alice_api, dataset, grid={"learning_rate": [0.1]}, max_concurent=3)

    assert list(body["detail"]) == ["max_concurent"] and "did you mean max_concurrent" in body["error"]
