"""A job is offered only what its backend declares it can do; asking for more is a clear 4xx."""
from __future__ import annotations

import io

import pytest
from django.conf import settings
from django.test import override_settings

from results.models import Compression, Export
from tests.conftest import make_image
from tests.results.test_export import _finished_job
from training.torch.backend import TorchBackend


class LiteBackend(TorchBackend):
    """A backend that exports archives only and cannot compress, inspect or resume."""

    supports_resume = False
    export_formats = ("archive",)
    supports_inspect = False
    compress_methods = ()


LITE = {**settings.TRAINING_BACKENDS, "lite": {"BACKEND": f"{__name__}.LiteBackend"}}


@pytest.fixture
def lite_job(alice):  # type: ignore[no-untyped-def]
    with override_settings(TRAINING_BACKENDS=LITE):
        job = _finished_job(alice)
        job.backend = "lite"
        job.save(update_fields=["backend"])
        yield job


@pytest.mark.django_db
def test_the_job_page_offers_only_what_the_backend_can_do(lite_job, client, alice):
    client.force_login(alice)

    page = client.get(f"/jobs/{lite_job.pk}/").content.decode()

    assert 'value="archive"' in page
    assert 'value="onnx"' not in page and 'value="torchscript"' not in page
    assert 'id="compress"' not in page and 'id="inspect-box"' not in page
    assert "Evaluate a split" in page


@pytest.mark.django_db
def test_the_full_backend_is_offered_everything(alice, client):
    job = _finished_job(alice)
    client.force_login(alice)

    page = client.get(f"/jobs/{job.pk}/").content.decode()

    for fmt in ("archive", "torchscript", "onnx"):
        assert f'value="{fmt}"' in page
    for method in ("prune", "quantize_dynamic", "quantize_static"):
        assert f'<option value="{method}">' in page
    assert 'id="inspect-box"' in page


@pytest.mark.django_db
def test_it_refuses_what_the_backend_cannot_do_and_names_what_it_can(lite_job, alice_api):
    export = alice_api.post(f"/api/v1/jobs/{lite_job.pk}/export/", {"format": "onnx"}, format="json")
    compress = alice_api.post(f"/api/v1/jobs/{lite_job.pk}/compress/", {"method": "prune"}, format="json")

    assert export.status_code == 400
    assert export.json()["error"] == "The lite backend cannot export 'onnx'; choose one of archive."
    assert compress.status_code == 400
    assert compress.json()["error"] == "The lite backend cannot compress with 'prune'; choose one of none."
    assert not Export.objects.exists() and not Compression.objects.exists()
    image = io.BytesIO(make_image((200, 30, 30)))
    image.name = "red.png"
    inspect = alice_api.post(f"/api/v1/jobs/{lite_job.pk}/inspect/", {"image": image}, format="multipart")
    assert inspect.status_code == 409
    assert inspect.json()["error"] == "The lite backend cannot inspect models."


@pytest.mark.django_db
def test_it_refuses_to_resume_on_a_backend_that_cannot(lite_job, alice_api, client, alice):
    lite_job.status = "aborted"
    lite_job.save(update_fields=["status"])

    response = alice_api.post(f"/api/v1/jobs/{lite_job.pk}/resume/")

    assert response.status_code == 409
    assert "cannot resume" in response.json()["error"]
    lite_job.refresh_from_db()
    assert lite_job.status == "aborted"
    client.force_login(alice)
    assert "Resume</button>" not in client.get(f"/jobs/{lite_job.pk}/").content.decode()
