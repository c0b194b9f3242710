"""A field the API does not know is a 400 naming it, on every POST and PATCH, JSON or multipart:
a typo never trains the default, and a field meant for a later version is never dropped."""
from __future__ import annotations

import re
import uuid

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.parsers import JSONParser

from datasets.models import Dataset
from jobs.models import TrainingJob
from results.models import Compression
from sweeps.models import Sweep
from tests.conftest import class_images, zip_bytes
from tests.datasets.test_bad_input import VALID_OPTIONS, archive_file
from tests.workbench.test_lists import dataset_of, jobs_of
from workbench.api import RequestInput

pytestmark = pytest.mark.django_db


def body_operations() -> list[tuple[str, str, object, list[str]]]:
    """(method, path, declared request, body formats it parses) of every POST and PATCH in the API."""
    generator = SchemaGenerator()
    generator._initialise_endpoints()
    found = []
    for path, path_regex, method, callback in generator.endpoints:
        if method in ("POST", "PATCH", "PUT"):
            view = generator.create_view(callback, method)
            view.schema.path, view.schema.path_regex, view.schema.method = path, path_regex, method
            formats = ["multipart"] + (["json"] if JSONParser in view.parser_classes else [])
            found.append((method, path, view.schema.get_request_serializer(), formats))
    return found


OPERATIONS = body_operations()


def test_every_post_and_patch_declares_a_body_that_refuses_unknown_fields():
    assert len(OPERATIONS) >= 20
    for method, path, declared, _ in OPERATIONS:
        classes = list(declared.values()) if isinstance(declared, dict) else [declared]
        assert all(isinstance(c, type) and issubclass(c, RequestInput) for c in classes), (method, path, declared)


@pytest.fixture
def objects(alice):  # type: ignore[no-untyped-def]
    """One of each thing a path names, alice's: a finished job, a sweep, a compression."""
    job = jobs_of(alice, 1)[0]
    sweep = Sweep.objects.create(owner=alice, name="s", dataset=job.dataset, network="mlp", trials_total=1,
                                 study_name=f"test-{uuid.uuid4().hex}")
    compression = Compression.objects.create(job=job, snapshot=job.snapshots.first(), method="prune", status="done")
    return {"job": job, "sweep": sweep, "compression": compression}


def url_of(path: str, objects: dict) -> str:  # type: ignore[type-arg]
    pk = objects["sweep"].pk if path.startswith("/api/v1/sweeps/") else objects["job"].pk
    return re.sub(r"\{cid\}", str(objects["compression"].pk), path.replace("{pk}", str(pk)))


@pytest.mark.parametrize(("method", "path", "body_format"), [(m, p, f) for m, p, _, formats in OPERATIONS for f in formats],
                         ids=[f"{m} {p} {f}" for m, p, _, formats in OPERATIONS for f in formats])
def test_every_post_and_patch_answers_an_unknown_field_with_a_400_naming_it(alice_api, objects, method, path,
                                                                           body_format):
    jobs_before = TrainingJob.objects.count()
    send = alice_api.patch if method == "PATCH" else alice_api.post

    response = send(url_of(path, objects), {"zz_not_a_field": "1"}, format=body_format)

    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert list(body["detail"]) == ["zz_not_a_field"] and "zz_not_a_field" in body["error"]
    assert TrainingJob.objects.count() == jobs_before
    assert TrainingJob.objects.get(pk=objects["job"].pk).status == "done"


def test_a_typo_in_a_job_field_is_refused_not_trained_with_the_default(alice_api, alice):
    dataset = dataset_of(alice)

    response = alice_api.post("/api/v1/jobs/", {"dataset": dataset.pk, "network": "mlp", "epochz": 3}, format="json")

    assert response.status_code == 400
    assert response.json() == {"error": "epochz: Unknown field; did you mean epochs?",
                               "detail": {"epochz": ["Unknown field; did you mean epochs?"]}}
    assert not TrainingJob.objects.exists()


def test_the_documented_job_fields_still_work(alice_api, alice):
    dataset = dataset_of(alice)

    response = alice_api.post("/api/v1/jobs/", {"dataset": dataset.pk, "network": "mlp", "epochs": 3,
                                                "name": "three", "group": "g", "notes": "n"}, format="json")

    assert response.status_code == 201, response.content
    assert TrainingJob.objects.get().epochs == 3


def test_patching_a_job_names_each_field_that_cannot_change(alice_api, alice):
    job = jobs_of(alice, 1)[0]

    response = alice_api.patch(f"/api/v1/jobs/{job.pk}/", {"notes": "n", "epochs": 5}, format="json")

    assert response.status_code == 400
    assert response.json()["detail"] == {"epochs": ["Only notes and group can be changed on a job."]}
    assert TrainingJob.objects.get(pk=job.pk).notes == ""


def post_dataset(client, **fields):  # type: ignore[no-untyped-def]
    archive = archive_file(zip_bytes(class_images(per_class=3)))
    return client.post("/api/v1/datasets/", {**VALID_OPTIONS, "archive": archive, **fields}, format="multipart")


def test_a_dataset_upload_refuses_an_unknown_field_and_keeps_nothing(alice_api):
    response = post_dataset(alice_api, colour_mode="rgb")

    assert response.status_code == 400
    assert list(response.json()["detail"]) == ["colour_mode"]
    assert not Dataset.objects.exists()


@pytest.mark.parametrize(("field", "value", "words"), [
    ("task", "regression", '"regression" is not a task'),
    ("ignore_index", "255", "ignore_index is for segmentation datasets only"),
    ("box_format", "yolo", "box_format is for detection datasets only"),
])
def test_a_dataset_of_an_unknown_task_or_another_task_s_field_is_a_400_naming_the_field(alice_api, field, value, words):
    response = post_dataset(alice_api, **{field: value})

    assert response.status_code == 400
    assert list(response.json()["detail"]) == [field] and words in response.json()["error"]
    assert not Dataset.objects.exists()


def test_a_classification_dataset_may_say_its_task(alice_api):
    response = post_dataset(alice_api, task="classification")

    assert response.status_code == 201, response.content
    assert Dataset.objects.count() == 1
