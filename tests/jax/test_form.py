"""The job form offers the jax backend, saying what it leaves out, and shows a refusal beside the field."""
from __future__ import annotations

import pytest

from jobs.models import TrainingJob
from tests.jobs.test_augmentation_form import a_dataset, form_data

pytestmark = pytest.mark.django_db


def test_it_offers_each_backend_with_what_it_leaves_out(client, alice):
    client.force_login(alice)
    page = client.get("/jobs/new/").content.decode()
    assert '<option value="jax">jax: JAX 0.10.2 (classification; no mixed precision, no compile, one device)' in page
    assert '<option value="torch" selected>torch: PyTorch' in page


def test_it_queues_a_jax_job_from_the_form(client, alice):
    client.force_login(alice)
    response = client.post("/jobs/new/", form_data(a_dataset(alice), backend="jax"))
    assert response.status_code == 302, response.context["form"].errors
    assert TrainingJob.objects.get().backend == "jax"


def test_it_shows_what_jax_cannot_do_beside_the_field(client, alice):
    client.force_login(alice)
    response = client.post("/jobs/new/", form_data(a_dataset(alice), backend="jax", amp="bf16"))
    assert response.status_code == 400
    assert list(response.context["form"].errors) == ["amp"]
    assert "jax backend" in response.context["form"].errors["amp"][0]
    assert not TrainingJob.objects.exists()


def test_it_queues_a_jax_job_with_every_augmentation_from_the_form(client, alice):
    client.force_login(alice)
    fields = {"aug_flip": "both", "aug_rot90": "on", "aug_rotate_degrees": "15", "aug_translate": "0.1",
              "aug_scale_low": "0.9", "aug_scale_high": "1.2", "aug_crop_padding": "2", "aug_noise_std": "0.05",
              "aug_hue": "0.1", "aug_saturation": "0.2", "aug_value": "0.2"}
    response = client.post("/jobs/new/", form_data(a_dataset(alice, channels=3), backend="jax", **fields))
    assert response.status_code == 302, response.context["form"].errors
    job = TrainingJob.objects.get()
    assert job.backend == "jax" and job.augmentation["rotate_degrees"] == 15.0
    assert job.augmentation["hsv"] == {"hue": 0.1, "saturation": 0.2, "value": 0.2}
