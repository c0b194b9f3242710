"""The job form's augmentation and solver-extra fields: they build the job's `augmentation`, show a
bad value beside its field, refuse colour shifts on a grayscale dataset, and a clone keeps them."""
from __future__ import annotations

from typing import Any

import pytest

from datasets.models import Dataset
from jobs.augmentation_form import augmentation_error_field
from jobs.forms import JobForm
from jobs.models import TrainingJob

pytestmark = pytest.mark.django_db

AUGMENTED = {"flip": "both", "rot90": True, "rotate_degrees": 15.0, "translate": 0.1, "scale": [0.9, 1.2],
             "crop_padding": 2, "noise_std": 0.05, "mean": "pixel"}


def a_dataset(owner, channels: int = 1) -> Dataset:  # type: ignore[no-untyped-def]
    return Dataset.objects.create(owner=owner, name=f"{channels}-channel", source="example", source_name="x",
                                  image_width=28, image_height=28, channels=channels, resize_mode="squash",
                                  val_percent=20, test_percent=0, seed=0, status="ready",
                                  classes=[str(i) for i in range(10)])


def form_data(dataset: Dataset, **fields: Any) -> dict[str, Any]:
    """What the page posts when only these fields are changed."""
    form = JobForm(user=dataset.owner, initial={"dataset": dataset.pk})
    data = {name: form[name].value() for name in form.fields}
    data = {k: v for k, v in data.items() if v is not None and v is not False}
    return {**data, "network": "lenet", **fields}


def bound(dataset: Dataset, **fields: Any) -> JobForm:
    return JobForm(form_data(dataset, **fields), user=dataset.owner)


def test_it_builds_the_augmentation_from_the_fields(alice):
    form = bound(a_dataset(alice), aug_flip="both", aug_rot90="on", aug_rotate_degrees="15", aug_translate="0.1",
                 aug_scale_low="0.9", aug_scale_high="1.2", aug_crop_padding="2", aug_noise_std="0.05",
                 aug_mean="pixel", accumulate="4", grad_clip="1.5", label_smoothing="0.1")

    assert form.is_valid(), form.errors
    settings_ = form.job_settings()
    assert settings_.augmentation == AUGMENTED
    assert (settings_.accumulate, settings_.grad_clip, settings_.label_smoothing) == (4, 1.5, 0.1)


def test_it_leaves_the_augmentation_empty_when_nothing_is_changed(alice):
    form = bound(a_dataset(alice))

    assert form.is_valid(), form.errors
    assert form.job_settings().augmentation == {}
    assert form.job_settings().accumulate == 1


def test_it_takes_colour_shifts_on_a_colour_dataset(alice):
    form = bound(a_dataset(alice, channels=3), aug_saturation="0.2")

    assert form.is_valid(), form.errors
    assert form.job_settings().augmentation == {"hsv": {"hue": 0.0, "saturation": 0.2, "value": 0.0}}


@pytest.mark.parametrize("field,value,key", [
    ("aug_rotate_degrees", "200", "augmentation.rotate_degrees"), ("aug_translate", "0.9", "augmentation.translate"),
    ("aug_scale_low", "1.5", "augmentation.scale"), ("aug_noise_std", "2", "augmentation.noise_std"),
    ("aug_crop_padding", "100", "augmentation.crop_padding"),
])
def test_it_shows_a_bad_value_beside_its_field(client, alice, field, value, key):
    dataset = a_dataset(alice)
    client.force_login(alice)

    response = client.post("/jobs/new/", form_data(dataset, **{field: value}))

    assert response.status_code == 400
    errors = response.context["form"].errors
    assert list(errors) == [field] and errors[field][0].startswith(f"{key}:")
    assert not TrainingJob.objects.exists()


def test_it_refuses_colour_shifts_on_a_grayscale_dataset_with_the_message(client, alice):
    dataset = a_dataset(alice, channels=1)
    client.force_login(alice)

    response = client.post("/jobs/new/", form_data(dataset, aug_hue="0.1"))

    assert response.status_code == 400
    assert "hsv shifts need a colour dataset; this one is grayscale (1 channel)" in response.content.decode()
    assert "aug_hue" in response.context["form"].errors


@pytest.mark.parametrize("field,value", [("accumulate", "0"), ("grad_clip", "-1"), ("label_smoothing", "0.6")])
def test_it_refuses_solver_extras_out_of_range_beside_the_field(client, alice, field, value):
    client.force_login(alice)

    response = client.post("/jobs/new/", form_data(a_dataset(alice), **{field: value}))

    assert response.status_code == 400
    assert list(response.context["form"].errors) == [field]


def submit_clone(client, pk: int) -> TrainingJob:  # type: ignore[no-untyped-def]
    """Open the form as a clone of job `pk`, submit it as it comes, and return the new job."""
    form = client.get(f"/jobs/new/?clone={pk}").context["form"]
    data = {name: form[name].value() for name in form.fields}
    response = client.post("/jobs/new/", {k: v for k, v in data.items() if v is not None and v is not False})
    assert response.status_code == 302, response.context["form"].errors
    return TrainingJob.objects.exclude(pk=pk).get()


def test_a_clone_through_the_form_keeps_augmentation_and_solver_extras(client, alice, alice_api):
    dataset = a_dataset(alice)
    source = alice_api.post("/api/v1/jobs/", {"dataset": dataset.pk, "network": "lenet", "augmentation": AUGMENTED,
                                              "accumulate": 3, "grad_clip": 2.0, "label_smoothing": 0.2},
                            format="json").json()
    client.force_login(alice)

    clone = submit_clone(client, source["id"])
    assert clone.augmentation == source["augmentation"] == AUGMENTED
    assert (clone.accumulate, clone.grad_clip, clone.label_smoothing) == (3, 2.0, 0.2)


def test_it_puts_a_service_error_beside_the_field_of_the_key_it_names():
    assert augmentation_error_field("augmentation.hsv.value: 2 must be a number from 0 to 1.") == "aug_value"
    assert augmentation_error_field("augmentation.scale: low 2 is above high 1.") == "aug_scale_low"
    assert augmentation_error_field("augmentation.shear: unknown key") is None
    assert augmentation_error_field("The torch backend cannot augment") is None


def test_the_job_page_lists_the_augmentation_and_solver_extras_it_runs_with(client, alice, alice_api):
    dataset = a_dataset(alice)
    job = alice_api.post("/api/v1/jobs/", {"dataset": dataset.pk, "network": "lenet", "augmentation": AUGMENTED,
                                           "accumulate": 3, "label_smoothing": 0.2}, format="json").json()
    plain = alice_api.post("/api/v1/jobs/", {"dataset": dataset.pk, "network": "lenet"}, format="json").json()
    client.force_login(alice)

    page = client.get(f"/jobs/{job['id']}/").content.decode()
    assert ("left-right and top-bottom flips · quarter turns · rotate ±15° · shift ±0.1 · scale 0.9–1.2 · "
            "pad and crop 2 px · noise σ 0.05 · subtracts the mean of each channel") in page
    assert "accumulate 3 batches per step · label smoothing 0.2" in page and "clip the gradient" not in page
    page = client.get(f"/jobs/{plain['id']}/").content.decode()
    assert "none · subtracts the mean image" in page and "Solver extras" not in page


@pytest.mark.django_db(transaction=True)  # the sweep's Optuna study opens its own connection
def test_a_sweep_from_the_form_gives_every_trial_the_augmentation(client, alice):
    from sweeps.models import Sweep

    client.force_login(alice)

    response = client.post("/jobs/new/", form_data(a_dataset(alice), learning_rate="0.1, 0.01", aug_rot90="on",
                                                   grad_clip="2"))

    assert response.status_code == 302, response.context["form"].errors
    sweep = Sweep.objects.get()
    assert sweep.base["augmentation"] == {"rot90": True} and sweep.base["grad_clip"] == 2.0
