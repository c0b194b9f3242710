"""Detection jobs through the generic lifecycle: `centernet` is the task's only built-in and its
default (with its own solver settings), sweeps optimise val_map_50 unless told, the job's best
keys are val_map_50 and val_map. (The network and the backend's `detection` come with the torch
side; these tests hold once it is merged.)"""
from __future__ import annotations

from typing import Any

import pytest

from datasets.models import Dataset
from jobs.models import TrainingJob
from jobs.options import DEFAULTS, NETWORK_DEFAULT_FIELDS
from jobs.reporting import Summary
from jobs.services import training_plan
from networks.builtin import DEFAULT_SETTINGS
from sweeps.spec import sweep_metrics

pytestmark = pytest.mark.django_db


def ready_dataset(owner: Any, task: str = "detection") -> Dataset:
    return Dataset.objects.create(owner=owner, name=f"{task} set", task=task, source="example", source_name="x",
                                  image_width=64, image_height=48, channels=3, resize_mode="squash", val_percent=20,
                                  test_percent=0, seed=0, status="ready", classes=["cat", "dog"],
                                  split_counts={"train": 8, "val": 2, "test": 0})


def create(client: Any, dataset: Dataset, **fields: Any) -> Any:
    return client.post("/api/v1/jobs/", {"dataset": dataset.pk, **fields}, format="json")


def test_the_networks_for_detection_are_centernet_alone(alice_api):
    networks = alice_api.get("/api/v1/networks/?task=detection").json()["results"]

    assert [n["name"] for n in networks] == ["centernet"]
    assert networks[0]["tasks"] == ["detection"]


def test_a_job_with_only_a_dataset_trains_centernet_with_its_own_settings(alice, alice_api):
    response = create(alice_api, ready_dataset(alice), epochs=3)

    assert response.status_code == 201, response.json()
    job = response.json()
    assert (job["network"], job["epochs"], job["task"]) == ("centernet", 3, "detection")
    expected = {**{name: getattr(DEFAULTS, name) for name in NETWORK_DEFAULT_FIELDS}, **DEFAULT_SETTINGS["centernet"]}
    assert {name: job[name] for name in NETWORK_DEFAULT_FIELDS} == expected
    assert training_plan(TrainingJob.objects.get(pk=job["id"])).task == "detection"


def test_a_classification_network_on_a_detection_dataset_is_a_400_naming_network(alice, alice_api):
    response = create(alice_api, ready_dataset(alice), network="lenet")

    assert response.status_code == 400
    assert response.json()["detail"]["network"] == [
        "The network 'lenet' does not fit a detection dataset: use one of centernet."]


def test_centernet_on_a_classification_dataset_is_a_400_naming_network(alice, alice_api):
    response = create(alice_api, ready_dataset(alice, task="classification"), network="centernet")

    assert response.status_code == 400 and list(response.json()["detail"]) == ["network"]


def sweep(client: Any, dataset: Dataset, **fields: Any) -> Any:
    body = {"name": "centernet lr", "dataset": dataset.pk, "network": "centernet", "base": {"epochs": 1},
            "grid": {"learning_rate": [0.001, 0.002]}, **fields}
    return client.post("/api/v1/sweeps/", body, format="json")


def test_a_detection_sweep_may_optimise_each_map_or_the_loss():
    assert sweep_metrics("detection") == {"val_map_50": "max", "val_map": "max", "val_loss": "min"}


@pytest.mark.django_db(transaction=True)  # the sweep's Optuna study opens its own connection
def test_a_detection_sweep_maximises_val_map_50_unless_told(alice, alice_api):
    dataset = ready_dataset(alice)

    default = sweep(alice_api, dataset)
    told = sweep(alice_api, dataset, early_stopping={"method": "asha", "metric": "val_map"})
    refused = sweep(alice_api, dataset, early_stopping={"method": "asha", "metric": "val_accuracy"})

    assert default.status_code == 201, default.json()
    assert (default.json()["metric"], default.json()["mode"]) == ("val_map_50", "max")
    assert told.status_code == 201 and told.json()["metric"] == "val_map"
    assert refused.status_code == 400
    assert refused.json()["error"] == "The metric is val_map_50 or val_map or val_loss for this dataset."


def test_the_best_of_each_map_is_the_highest_and_the_loss_parts_have_none():
    summary = Summary()
    for map_50, epoch in ((0.4, 1.0), (0.7, 2.0), (0.6, 3.0)):
        summary.track("val", "map_50", map_50, epoch)
        summary.track("val", "map", map_50 / 2, epoch)
        summary.track("train", "loss_heatmap", 1 / epoch, epoch)

    assert summary.best == {"val_map_50": 0.7, "val_map_50_epoch": 2.0, "val_map": 0.35, "val_map_epoch": 2.0}
    assert summary.latest["val_map_50"] == 0.6
