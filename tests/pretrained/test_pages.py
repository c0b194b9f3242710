"""The Pretrained page, the make-from-a-job form and the job form's 'Start from' fields."""
from __future__ import annotations

import io
import re

import pytest

from jobs.models import TrainingJob
from pretrained.models import PretrainedModel
from tests.pretrained.test_pretrained_api import _finished_job, lenet_weights

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_web(client, alice):  # type: ignore[no-untyped-def]
    client.force_login(alice)
    return client


def test_it_uploads_from_the_page_and_lists_the_model(alice_web):
    weights = io.BytesIO(lenet_weights())
    weights.name = "lenet.safetensors"
    response = alice_web.post("/pretrained/", {"name": "mine", "weights": weights, "network": "lenet",
                                               "classes": "a, b, c", "input_shape": "[1, 8, 8]",
                                               "preprocessing": ""}, follow=True)

    assert response.status_code == 200
    assert PretrainedModel.objects.get().classes == ["a", "b", "c"]
    assert b"mine" in response.content and b"Uploaded" in response.content


def test_it_shows_the_field_error_on_a_bad_upload(alice_web):
    weights = io.BytesIO(b"not safetensors at all")
    weights.name = "x.safetensors"
    response = alice_web.post("/pretrained/", {"name": "bad", "weights": weights, "network": "lenet",
                                               "classes": "a, b, c", "input_shape": "[1, 8, 8]"})

    assert b"not safetensors" in response.content and not PretrainedModel.objects.exists()


def test_it_makes_a_model_from_the_job_page_and_fine_tunes_from_the_job_form(alice, alice_web):
    job = _finished_job(alice, lenet_weights())
    page = alice_web.get(f"/jobs/{job.pk}/").content.decode()
    assert f"?pretrained_job={job.pk}&amp;pretrained_epoch=1" in page and 'id="make-pretrained"' in page

    alice_web.post(f"/pretrained/from-job/{job.pk}/", {"name": "from page", "epoch": ""})
    assert PretrainedModel.objects.get().source_job == job

    form = alice_web.get(f"/jobs/new/?pretrained_job={job.pk}&pretrained_epoch=1").content.decode()
    assert re.search(r'<input[^>]*value="job"[^>]*checked', form)
    assert re.search(rf'id="id_pretrained_job"[^>]*|value="{job.pk}"', form)
    response = alice_web.post("/jobs/new/", {
        "dataset": job.dataset_id, "network": "lenet", "epochs": 1, "batch_size": 8, "optimizer": "sgd",
        "learning_rate": 0.01, "momentum": 0.9, "weight_decay": 0, "lr_policy": "fixed", "lr_step_size": 5,
        "lr_gamma": 0.1, "seed": 0, "device": "auto", "val_interval": 1, "snapshot_interval": 1,
        "pretrained_source": "job", "pretrained_job": job.pk, "pretrained_epoch": 1, "freeze_epochs": -1,
        "pretrained_lr_mult": 1})
    tuned = TrainingJob.objects.exclude(pk=job.pk).get()
    assert response.status_code == 302
    assert tuned.pretrained["job"] == job.pk and tuned.pretrained["copy"][0] == "0.weight"
    assert tuned.freeze_epochs == -1
    assert f">job {job.pk} epoch 1</a>" in alice_web.get(f"/jobs/{tuned.pk}/").content.decode()
