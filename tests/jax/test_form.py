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


@pytest.mark.parametrize(("fields", "field"), [({"amp": "bf16"}, "amp"), ({"aug_rotate_degrees": "10"}, "aug_rotate_degrees")])
def test_it_shows_what_jax_cannot_do_beside_the_field(client, alice, fields, field):
    client.force_login(alice)
    response = client.post("/jobs/new/", form_data(a_dataset(alice), backend="jax", **fields))
    assert response.status_code == 400
    assert list(response.context["form"].errors) == [field]
    assert "jax backend" in response.context["form"].errors[field][0]
    assert not TrainingJob.objects.exists()
