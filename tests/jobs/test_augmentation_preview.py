"""GET datasets/{id}/augmentation-preview/: training images changed on a real worker by the Augmenter
training runs; reproducible from the seed, refused with the key named, owner-only."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
from urllib.parse import quote

import pytest

from tests.conftest import OUTCOME_SECONDS, ROOT, wait_for
from tests.jobs.test_augmentation_form import a_dataset
from tests.jobs.test_recovery import ready_digits
from workers.models import Worker


@pytest.fixture
def digits(celery_worker, alice_api):  # type: ignore[no-untyped-def]
    return ready_digits(alice_api)


def preview(client, dataset_id: int, augmentation: object, seed: int = 0, count: int = 8):  # type: ignore[no-untyped-def]
    query = f"augmentation={quote(json.dumps(augmentation))}&seed={seed}&count={count}"
    return client.get(f"/api/v1/datasets/{dataset_id}/augmentation-preview/?{query}")


def pngs(body: dict, which: str) -> list[bytes]:  # type: ignore[type-arg]
    return [base64.b64decode(image[which].split(",", 1)[1]) for image in body["images"]]


@pytest.mark.django_db(transaction=True)
def test_it_previews_on_the_worker_reproducibly_from_the_seed(digits, alice_api):
    plain = preview(alice_api, digits.pk, {"rotate_degrees": 0})
    assert plain.status_code == 200, plain.json()
    body = plain.json()
    assert body["seed"] == 0 and len(body["images"]) == 8
    assert {image["label"] for image in body["images"]} <= set(digits.classes)
    assert pngs(body, "augmented") == pngs(body, "original")

    for spec in ({"rot90": True}, {"flip": "both"}, {"rotate_degrees": 45, "noise_std": 0.1}):
        first = preview(alice_api, digits.pk, spec, seed=3).json()
        again = preview(alice_api, digits.pk, spec, seed=3).json()
        assert pngs(first, "augmented") != pngs(first, "original"), spec
        assert pngs(again, "augmented") == pngs(first, "augmented"), spec
        assert pngs(again, "original") == pngs(first, "original"), spec

    other = preview(alice_api, digits.pk, {"rot90": True}, seed=4).json()
    assert pngs(other, "augmented") != pngs(first, "augmented")


@pytest.mark.django_db(transaction=True)
def test_the_same_seed_shows_the_same_images_whatever_the_augmentation(digits, alice_api):
    """So the form's originals stay put while the user changes the settings."""
    plain = preview(alice_api, digits.pk, {}, seed=7).json()
    rotated = preview(alice_api, digits.pk, {"rotate_degrees": 45}, seed=7).json()

    assert pngs(rotated, "original") == pngs(plain, "original")
    assert pngs(rotated, "augmented") != pngs(plain, "augmented")


@pytest.mark.django_db
@pytest.mark.parametrize("augmentation,key", [
    ({"shear": 0.1}, "augmentation.shear"), ({"rotate_degrees": 200}, "augmentation.rotate_degrees"),
    ({"hsv": {"hue": 0.1}}, "augmentation.hsv"), ("flip", "augmentation"),
])
def test_it_refuses_a_bad_spec_naming_the_key(alice, alice_api, augmentation, key):
    response = preview(alice_api, a_dataset(alice, channels=1).pk, augmentation)

    assert response.status_code == 400
    assert response.json()["error"].startswith(f"{key}:")
    assert "augmentation" in response.json()["detail"]


@pytest.mark.django_db
def test_it_says_colour_shifts_need_a_colour_dataset(alice, alice_api):
    response = preview(alice_api, a_dataset(alice, channels=1).pk, {"hsv": {"saturation": 0.2}})

    assert response.status_code == 400
    assert "hsv shifts need a colour dataset; this one is grayscale" in response.json()["error"]


@pytest.mark.django_db
def test_it_refuses_json_that_is_not_json(alice, alice_api):
    response = alice_api.get(f"/api/v1/datasets/{a_dataset(alice).pk}/augmentation-preview/?augmentation={{flip")

    assert response.status_code == 400 and "augmentation" in response.json()["detail"]


@pytest.mark.django_db
def test_another_users_dataset_is_a_404(alice, bob_api):
    response = preview(bob_api, a_dataset(alice).pk, {})

    assert response.status_code == 404 and response.json()["error"]


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_fails_is_the_same_json_503_as_classify(celery_worker, alice, alice_api):
    response = preview(alice_api, a_dataset(alice).pk, {"rot90": True})  # no arrays on disk

    assert response.status_code == 503
    assert response.json()["error"].startswith("The serving worker could not do it (FileNotFoundError")


@pytest.mark.django_db(transaction=True)
def test_no_answer_is_the_same_json_504_as_classify(restartable_serving, alice, alice_api, settings):
    restartable_serving.kill()
    restartable_serving.start(WORKBENCH_FAULT_PAUSE="preview=120")  # there, and busy for longer than the wait
    wait_for(lambda: Worker.objects.filter(name__startswith=restartable_serving.name).exists(), OUTCOME_SECONDS,
             "the serving worker to report")
    settings.WORKBENCH_SERVING_TIMEOUT = 1

    response = preview(alice_api, a_dataset(alice).pk, {"rot90": True})

    assert response.status_code == 504
    assert response.json()["error"].startswith("The serving workers did not answer within 1 s")


@pytest.mark.django_db
def test_the_schema_documents_the_endpoint(alice_api):
    schema = alice_api.get("/api/v1/schema/?format=json").json()

    operation = schema["paths"]["/api/v1/datasets/{id}/augmentation-preview/"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"augmentation", "seed", "count"}


def test_the_web_side_of_the_preview_never_imports_torch():
    code = ("import django, os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'tests.settings'); "
            "django.setup(); import jobs.augmentation_api, jobs.augmentation_preview, jobs.augmentation_form, "
            "jobs.templatetags.job_settings, jobs.tasks; assert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
