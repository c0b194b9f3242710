"""The vision-task contract: what a backend trains, which networks fit a task, what a job defaults to."""
from __future__ import annotations

from importlib import metadata
from typing import ClassVar

import numpy as np
import pytest
from django.test import override_settings

from datasets.models import Dataset
from jobs.models import TrainingJob
from jobs.reporting import Summary
from networks.models import Network
from training.torch.backend import TorchBackend
from training.vision_tasks import VISION_TASKS, Metric, vision_task
from training.vision_tasks.classification import Classification

TORCH = {"BACKEND": "training.torch.backend.TorchBackend"}


class Toy(Classification):
    """A second task for the tests: its own metric (lower is better) and one built-in network."""

    name = "toy"
    networks = ("mlp",)
    metrics: ClassVar[tuple[Metric, ...]] = (Metric("error_rate", "Error rate", "min"),)


class ToyBackend(TorchBackend):
    tasks = ("classification", "toy")


@pytest.fixture
def toy_task(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setitem(VISION_TASKS, "toy", Toy())
    monkeypatch.setattr("networks.api.TASK_NAMES", (*VISION_TASKS,))


def _dataset(owner, task: str = "classification") -> Dataset:  # type: ignore[no-untyped-def]
    return Dataset.objects.create(owner=owner, name=f"{task} digits", task=task, source="example", source_name="x",
                                  image_width=28, image_height=28, channels=1, resize_mode="squash", val_percent=20,
                                  test_percent=0, seed=0, status="ready", classes=[str(i) for i in range(10)])


@pytest.mark.django_db
def test_it_lists_each_backend_with_its_framework_version_tasks_and_capabilities(alice_api):
    body = alice_api.get("/api/v1/backends/").json()

    assert body["count"] == 2  # torch and jax (tests/jax checks jax's entry)
    torch = next(entry for entry in body["results"] if entry["alias"] == "torch")
    assert torch["alias"] == "torch" and torch["framework"] == "PyTorch"
    assert torch["version"] == metadata.version("torch")
    assert torch["tasks"] == ["classification", "segmentation", "detection"]
    assert torch["capabilities"]["export_formats"] == ["archive", "torchscript", "onnx"]
    assert torch["capabilities"]["resume"] is True and torch["capabilities"]["distributed"] is True


@pytest.mark.django_db
def test_it_lists_only_the_networks_that_fit_a_task(alice_api, alice, toy_task):
    Network.objects.create(owner=alice, name="tiny", spec={"layers": [{"type": "flatten"}, {"type": "linear", "out_features": "num_classes"}]})

    classification = alice_api.get("/api/v1/networks/?task=classification").json()["results"]
    toy = alice_api.get("/api/v1/networks/?task=toy").json()["results"]
    unknown = alice_api.get("/api/v1/networks/?task=teleport")

    assert [n["name"] for n in classification] == ["lenet", "mlp", "alexnet", "resnet18", "tiny"]
    assert all(n["tasks"] == ["classification"] for n in classification if n["name"] != "mlp")
    assert [n["name"] for n in toy] == ["mlp"]
    assert unknown.status_code == 400 and "task" in unknown.json()["detail"]


@pytest.mark.django_db
def test_a_job_without_a_network_gets_its_tasks_default(alice_api, alice):
    dataset = _dataset(alice)

    response = alice_api.post("/api/v1/jobs/", {"dataset": dataset.pk}, format="json")

    assert response.status_code == 201, response.json()
    job = TrainingJob.objects.get(pk=response.json()["id"])
    assert job.network == "lenet" and job.name == "lenet on classification digits"
    assert alice_api.get(f"/api/v1/jobs/{job.pk}/").json()["task"] == "classification"
    assert alice_api.get(f"/api/v1/datasets/{dataset.pk}/").json()["task"] == "classification"


@pytest.mark.django_db
def test_it_refuses_a_backend_that_does_not_train_the_datasets_task(alice_api, alice, toy_task):
    dataset = _dataset(alice, "toy")

    response = alice_api.post("/api/v1/jobs/", {"dataset": dataset.pk, "network": "mlp"}, format="json")

    assert response.status_code == 400
    assert "does not train toy datasets" in response.json()["detail"]["backend"][0]
    assert not TrainingJob.objects.exists()


@pytest.mark.django_db
@override_settings(TRAINING_BACKENDS={"torch": TORCH, "toy": {"BACKEND": "tests.jobs.test_vision_tasks.ToyBackend"}})
def test_it_refuses_a_network_built_for_another_task(alice_api, alice, toy_task):
    dataset = _dataset(alice, "toy")

    refused = alice_api.post("/api/v1/jobs/", {"dataset": dataset.pk, "network": "lenet", "backend": "toy"},
                             format="json")
    default = alice_api.post("/api/v1/jobs/", {"dataset": dataset.pk, "backend": "toy"}, format="json")

    assert refused.status_code == 400
    assert refused.json()["detail"]["network"][0] == "The network 'lenet' does not fit a toy dataset: use one of mlp."
    assert default.status_code == 201, default.json()
    assert TrainingJob.objects.get().network == "mlp"


def test_the_best_of_each_metric_follows_its_tasks_mode(toy_task):
    summary = Summary()
    for value, epoch in ((0.5, 1.0), (0.3, 2.0), (0.4, 3.0)):
        summary.track("val", "error_rate", value, epoch)  # the toy task's: lower is better
        summary.track("val", "accuracy", 1 - value, epoch)  # classification's: higher is better
        summary.track("train", "loss", value, epoch)  # no best

    assert summary.best == {"val_error_rate": 0.3, "val_error_rate_epoch": 2.0,
                            "val_accuracy": 0.7, "val_accuracy_epoch": 2.0}
    assert summary.latest["val_error_rate"] == 0.4


def test_classification_answers_infer_with_the_top_five_and_names_unknown_tasks():
    answer = vision_task("classification").infer_answer(np.array([0.05, 0.4, 0.1, 0.2, 0.15, 0.1]), list("abcdef"))

    assert [p["label"] for p in answer["predictions"]] == ["b", "d", "e", "c", "f"]
    with pytest.raises(KeyError, match="Unknown task 'teleport'; known: classification"):
        vision_task("teleport")


@pytest.mark.django_db(transaction=True)
def test_a_job_whose_dataset_lost_a_file_fails_naming_it(celery_worker, alice_api):
    from tests.jobs.test_training_flow import ready_colours, start, wait_job

    dataset = ready_colours(alice_api)
    (dataset.folder / "val_labels.npy").unlink()

    job = wait_job(start(alice_api, dataset, epochs=1)["id"])

    assert job.status == "error"
    assert job.error.startswith("The dataset's files are missing on this worker: val_labels.npy")
