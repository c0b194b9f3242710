"""Segmentation jobs: created through the API and the form with the network left out (the task's
default built-in) and its own solver settings for the fields left out, explicit fields winning;
a network whose head does not fit is a 400 naming `network`; the plan carries the task and the
dataset's ignore_index; the vision task answers through its metrics."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import pytest

from datasets.models import Dataset
from jobs.models import TrainingJob
from jobs.options import DEFAULTS, NETWORK_DEFAULT_FIELDS, network_default_table
from jobs.services import training_plan
from networks.builtin import DEFAULT_SETTINGS
from tests.conftest import wait_for
from training.torch.backend import TorchBackend
from training.vision_tasks import vision_task

pytestmark = pytest.mark.django_db


def ready_dataset(owner, task: str = "segmentation", ignore_index: int = 255) -> Dataset:  # type: ignore[no-untyped-def]
    classes = ["background", "circle", "square"] if task == "segmentation" else ["a", "b", "c"]
    return Dataset.objects.create(owner=owner, name=f"{task} set", task=task, ignore_index=ignore_index,
                                  source="example", source_name="x", image_width=32, image_height=32, channels=3,
                                  resize_mode="squash", val_percent=20, test_percent=0, seed=0, status="ready",
                                  classes=classes, split_counts={"train": 8, "val": 2, "test": 0})


def create(client, dataset: Dataset, **fields: Any) -> Any:  # type: ignore[no-untyped-def]
    return client.post("/api/v1/jobs/", {"dataset": dataset.pk, **fields}, format="json")


def solver(job: dict[str, Any]) -> dict[str, Any]:
    return {name: job[name] for name in NETWORK_DEFAULT_FIELDS}


def expected(network: str, **given: Any) -> dict[str, Any]:
    values = {name: getattr(DEFAULTS, name) for name in NETWORK_DEFAULT_FIELDS}
    return {**values, **DEFAULT_SETTINGS.get(network, {}), **given}


# --- the task and the backend ------------------------------------------------------------------

def test_the_segmentation_task_answers_and_evaluates_through_its_metrics() -> None:
    task = vision_task("segmentation")
    pred = np.array([[[0, 1], [1, 1]]])
    probabilities = np.stack([pred == 0, pred == 1], axis=1).astype(np.float32)  # (1, 2, 2, 2)

    answer = task.infer_answer(probabilities[0], ["sky", "road"])
    report = task.evaluation_report(probabilities, np.array([[[0, 1], [7, 0]]]), ["sky", "road"], ignore_index=7)

    assert (answer["width"], answer["height"], answer["class_pixels"]) == (2, 2, {"sky": 0.25, "road": 0.75})
    assert report["task"] == "segmentation" and report["pixel_accuracy"] == pytest.approx(2 / 3)
    assert report["confusion"] == [[1, 1], [0, 1]]  # the 7 counted nowhere


def test_the_torch_backend_trains_segmentation(alice_api) -> None:  # type: ignore[no-untyped-def]
    assert TorchBackend.tasks == ("classification", "segmentation", "detection")
    torch = next(b for b in alice_api.get("/api/v1/backends/").json()["results"] if b["alias"] == "torch")
    assert "segmentation" in torch["tasks"]


def test_the_plan_carries_the_task_and_the_datasets_ignore_index(alice, alice_api) -> None:  # type: ignore[no-untyped-def]
    dataset = ready_dataset(alice, ignore_index=0 + 200)
    job = TrainingJob.objects.get(pk=create(alice_api, dataset, epochs=2).json()["id"])

    plan = training_plan(job)

    assert (plan.task, plan.ignore_index, plan.classes) == ("segmentation", 200, ["background", "circle", "square"])


# --- the network and its defaults ----------------------------------------------------------------

def test_a_job_with_only_a_dataset_trains_the_unet_with_its_own_settings(alice, alice_api) -> None:  # type: ignore[no-untyped-def]
    response = create(alice_api, ready_dataset(alice), epochs=3)

    assert response.status_code == 201, response.json()
    job = response.json()
    assert (job["network"], job["epochs"], job["task"]) == ("unet", 3, "segmentation")
    assert solver(job) == expected("unet") and job["optimizer"] == "adam" and job["batch_size"] == 8
    assert job["name"] == "unet on segmentation set"


def test_the_fcn_brings_its_own_settings_too(alice, alice_api) -> None:  # type: ignore[no-untyped-def]
    job = create(alice_api, ready_dataset(alice), network="fcn_resnet18").json()

    assert solver(job) == expected("fcn_resnet18")
    assert (job["optimizer"], job["lr_policy"], job["epochs"]) == ("sgd", "cosine", DEFAULTS.epochs)


def test_the_fields_given_win_over_the_networks_defaults(alice, alice_api) -> None:  # type: ignore[no-untyped-def]
    job = create(alice_api, ready_dataset(alice), network="unet", batch_size=4, optimizer="sgd",
                 learning_rate=DEFAULTS.learning_rate).json()

    # Given, even where equal to the job default (learning_rate 0.01): never replaced by the network's.
    assert solver(job) == expected("unet", batch_size=4, optimizer="sgd", learning_rate=DEFAULTS.learning_rate)


def test_a_classification_builtin_keeps_the_job_defaults(alice, alice_api) -> None:  # type: ignore[no-untyped-def]
    job = create(alice_api, ready_dataset(alice, task="classification")).json()

    assert job["network"] == "lenet"
    kept = [name for name in asdict(DEFAULTS) if name in job and name not in ("name", "backend")]
    assert {name: job[name] for name in kept} == {name: getattr(DEFAULTS, name) for name in kept}


def test_a_clone_of_a_unet_job_keeps_its_settings(alice, alice_api) -> None:  # type: ignore[no-untyped-def]
    job = create(alice_api, ready_dataset(alice), batch_size=2, learning_rate=0.003).json()

    clone = alice_api.post(f"/api/v1/jobs/{job['id']}/clone/").json()

    assert solver(clone) == solver(job) == expected("unet", batch_size=2, learning_rate=0.003)


@pytest.mark.parametrize("network", ["lenet", "resnet18"])
def test_a_classification_builtin_on_a_segmentation_dataset_is_a_400_naming_network(
        alice, alice_api, network: str) -> None:  # type: ignore[no-untyped-def]
    response = create(alice_api, ready_dataset(alice), network=network)

    assert response.status_code == 400
    message = f"The network '{network}' does not fit a segmentation dataset: use one of unet, fcn_resnet18."
    assert response.json() == {"error": message, "detail": {"network": [message]}}


def test_a_segmentation_builtin_on_a_classification_dataset_is_a_400_naming_network(alice, alice_api) -> None:  # type: ignore[no-untyped-def]
    response = create(alice_api, ready_dataset(alice, task="classification"), network="unet")

    assert response.status_code == 400 and list(response.json()["detail"]) == ["network"]
    assert "does not fit a classification dataset" in response.json()["error"]


# --- the form ------------------------------------------------------------------------------------

def form_post(client, dataset: Dataset, **fields: Any):  # type: ignore[no-untyped-def]
    body = {"dataset": dataset.pk, "network": "unet", "epochs": 2, "seed": 0, "device": "auto", "val_interval": 1,
            "snapshot_interval": 1, "lr_step_size": 5, "lr_gamma": 0.1, "momentum": 0.9, "weight_decay": 0,
            "lr_policy": "fixed", **fields}
    return client.post("/jobs/new/", body)


def test_the_form_fills_the_blank_fields_with_the_networks_defaults(client, alice) -> None:  # type: ignore[no-untyped-def]
    client.force_login(alice)

    response = form_post(client, ready_dataset(alice), batch_size="", learning_rate="", optimizer="")

    assert response.status_code == 302, response.content.decode()[:2000]
    job = TrainingJob.objects.get()
    assert (job.network, job.optimizer, job.learning_rate, job.batch_size) == ("unet", "adam", 0.001, 8)


def test_the_form_keeps_what_was_filled_in(client, alice) -> None:  # type: ignore[no-untyped-def]
    client.force_login(alice)

    response = form_post(client, ready_dataset(alice), batch_size="16", learning_rate="0.02", optimizer="sgd")

    assert response.status_code == 302
    job = TrainingJob.objects.get()
    assert (job.optimizer, job.learning_rate, job.batch_size) == ("sgd", 0.02, 16)


def test_the_form_page_carries_each_networks_defaults_for_its_script(client, alice) -> None:  # type: ignore[no-untyped-def]
    client.force_login(alice)
    ready_dataset(alice)

    page = client.get("/jobs/new/").content.decode()

    assert 'id="network-defaults"' in page
    table = network_default_table(["lenet", "unet"])
    assert table["unet"]["optimizer"] == "adam" and table["lenet"] == table[""] == {
        name: getattr(DEFAULTS, name) for name in NETWORK_DEFAULT_FIELDS}


# --- sweeps --------------------------------------------------------------------------------------

def sweep(client, dataset: Dataset, **fields: Any):  # type: ignore[no-untyped-def]
    body = {"name": "unet lr", "dataset": dataset.pk, "network": "unet", "base": {"epochs": 1},
            "grid": {"learning_rate": [0.001, 0.003]}, **fields}
    return client.post("/api/v1/sweeps/", body, format="json")


@pytest.mark.django_db(transaction=True)  # the sweep's Optuna study opens its own connection
def test_a_segmentation_sweep_maximises_val_mean_iou_unless_told(alice, alice_api) -> None:  # type: ignore[no-untyped-def]
    dataset = ready_dataset(alice)

    default = sweep(alice_api, dataset)
    pruned = sweep(alice_api, dataset, early_stopping={"method": "asha", "metric": "val_pixel_accuracy"})

    assert default.status_code == 201, default.json()
    assert (default.json()["metric"], default.json()["mode"]) == ("val_mean_iou", "max")
    assert pruned.status_code == 201 and pruned.json()["metric"] == "val_pixel_accuracy"


@pytest.mark.django_db(transaction=True)  # the sweep's Optuna study opens its own connection
def test_a_segmentation_sweep_refuses_val_accuracy_naming_the_metric(alice, alice_api) -> None:  # type: ignore[no-untyped-def]
    response = sweep(alice_api, ready_dataset(alice), early_stopping={"method": "asha", "metric": "val_accuracy"})

    assert response.status_code == 400 and list(response.json()["detail"]) == ["early_stopping.metric"]
    assert response.json()["error"] == "The metric is val_mean_iou or val_pixel_accuracy or val_loss for this dataset."


@pytest.mark.django_db(transaction=True)  # the sweep's Optuna study opens its own connection
def test_a_sweeps_trials_take_the_networks_defaults_for_what_the_base_leaves_out(alice, alice_api) -> None:  # type: ignore[no-untyped-def]
    from sweeps.models import Sweep
    from sweeps.services import sweep_advance

    sweep(alice_api, ready_dataset(alice), base={"epochs": 1, "batch_size": 4})
    sweep_advance(sweep_id=Sweep.objects.get().pk)
    # The worker may hold the sweep's advance at that moment (its own advance of the new sweep): then
    # this call returns at once and the trials come from the worker's. Waited for either way.
    wait_for(lambda: TrainingJob.objects.count() == 2, 60, "the sweep's two trials")

    jobs = TrainingJob.objects.order_by("learning_rate")
    assert [(j.optimizer, j.batch_size, j.learning_rate) for j in jobs] == [("adam", 4, 0.001), ("adam", 4, 0.003)]


def test_the_form_for_a_segmentation_dataset_starts_on_the_unet_and_its_settings(client, alice) -> None:  # type: ignore[no-untyped-def]
    client.force_login(alice)
    dataset = ready_dataset(alice)

    form = client.get(f"/jobs/new/?dataset={dataset.pk}").context["form"]

    assert (form["network"].value(), form["optimizer"].value(), form["batch_size"].value()) == ("unet", "adam", 8)
    classification = client.get(f"/jobs/new/?dataset={ready_dataset(alice, task='classification').pk}").context["form"]
    assert (classification["network"].value(), classification["batch_size"].value()) == ("lenet", DEFAULTS.batch_size)


def test_the_loop_builds_the_network_for_the_plans_task(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A job's spec is checked at creation; a plan whose head does not fit its task still fails with
    the networks' own message where the worker builds it, not with a shape error in the loss."""
    import torch

    from networks.builtin import builtin_spec
    from networks.spec import SpecError
    from tests.jobs.test_training_extras import Recorder, make_plan
    from tests.segmentation.test_training import SIZE, write_squares
    from training.torch.loop import _Run

    squares = write_squares(tmp_path / "squares")
    plan = make_plan(squares, tmp_path / "job", task="segmentation", input_shape=(3, SIZE, SIZE),
                     classes=["background", "square"], network_spec=builtin_spec("lenet", (3, SIZE, SIZE), 2))

    with pytest.raises(SpecError, match="must end with 2x16x16, one score per class for each pixel"):
        _Run(plan, Recorder(), torch.device("cpu"))
