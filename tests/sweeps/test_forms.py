"""The HTML side of sweeps: the job form's comma-separated values and the sweep form, refused with
the reason beside the field it belongs to."""
from __future__ import annotations

import pytest

from datasets.models import Dataset
from jobs.models import TrainingJob
from sweeps.forms import several_values
from sweeps.models import Sweep

pytestmark = pytest.mark.django_db


@pytest.fixture
def dataset(alice) -> Dataset:  # type: ignore[no-untyped-def]
    return Dataset.objects.create(owner=alice, name="colours", source="example", source_name="x", image_width=8,
                                  image_height=8, channels=3, resize_mode="squash", val_percent=10, test_percent=0,
                                  seed=0, status="ready", classes=["a", "b"])


JOB_FORM = {"network": "mlp", "epochs": "1", "batch_size": "8", "optimizer": "sgd", "learning_rate": "0.01",
            "momentum": "0.9", "weight_decay": "0", "lr_policy": "fixed", "lr_step_size": "5", "lr_gamma": "0.1",
            "seed": "0", "device": "auto", "val_interval": "1", "snapshot_interval": "1"}


def test_it_reads_several_comma_separated_values_as_a_grid():
    from django.http import QueryDict

    data = QueryDict("learning_rate=0.1,%200.01&batch_size=32&seed=1;2;3&name=x")
    single, grid = several_values(data, ("learning_rate", "batch_size", "seed"))
    assert grid == {"learning_rate": [0.1, 0.01], "seed": [1, 2, 3]}
    assert single["learning_rate"] == "0.1" and single["batch_size"] == "32" and single["name"] == "x"


def test_the_job_form_refuses_a_grid_value_beside_its_field(client, alice, dataset):
    client.force_login(alice)
    response = client.post("/jobs/new/", {**JOB_FORM, "dataset": dataset.pk, "learning_rate": "0.1, 50"})
    assert response.status_code == 400
    assert "learning_rate" in response.context["form"].errors
    assert not Sweep.objects.exists() and not TrainingJob.objects.exists()


def test_the_sweep_form_refuses_an_unknown_field_and_a_backwards_range(client, alice, dataset):
    client.force_login(alice)
    assert client.get("/sweeps/new/").status_code == 200
    form = {"dataset": dataset.pk, "network": "mlp", "epochs": 1, "batch_size": 8, "optimizer": "sgd",
            "learning_rate": 0.01, "method": "random", "trials": 3, "seed": 0, "max_concurrent": 1,
            "metric": "val_accuracy", "grace_epochs": 1, "reduction_factor": 3}
    response = client.post("/sweeps/new/", {**form, "parameters": "colour: 1 .. 2"})
    assert response.status_code == 400 and "colour" in str(response.context["form"].errors["parameters"])
    response = client.post("/sweeps/new/", {**form, "parameters": "learning_rate: 0.5 .. 0.01 log"})
    assert response.status_code == 400 and "backwards" in str(response.context["form"].errors["parameters"])
    assert not Sweep.objects.exists()


def test_the_sweeps_menu_lists_nothing_yet(client, alice):
    client.force_login(alice)
    response = client.get("/sweeps/")
    assert response.status_code == 200 and b"No sweeps yet" in response.content
