"""Upload → real Celery worker → training-ready arrays on disk, through the API."""
from __future__ import annotations

import io

import numpy as np
import pytest

from datasets.ingest.store import open_split
from datasets.models import Dataset
from tests.conftest import wait_dataset

pytestmark = pytest.mark.django_db(transaction=True)


def upload(client, data: bytes, name: str = "colours.zip", **fields):  # type: ignore[no-untyped-def]
    payload = {"name": "Colours", "image_width": 12, "image_height": 10, "channels": 3,
               "val_percent": 20, "test_percent": 10, "seed": 7, **fields}
    payload["archive"] = io.BytesIO(data)
    payload["archive"].name = name
    return client.post("/api/v1/datasets/", payload, format="multipart")


def test_it_ingests_an_uploaded_zip_into_memory_mappable_splits(celery_worker, alice_api, colour_zip):
    response = upload(alice_api, colour_zip)
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "queued"

    dataset = wait_dataset(response.json()["id"])

    assert dataset.status == "ready", dataset.error
    assert dataset.classes == ["blue", "green", "red"]
    assert dataset.split_counts == {"train": 21, "val": 6, "test": 3}
    assert dataset.class_counts["val"] == {"blue": 2, "green": 2, "red": 2}
    images, labels = open_split(dataset.folder, "train")
    assert isinstance(images, np.memmap)
    assert images.shape == (21, 3, 10, 12) and images.dtype == np.uint8
    # Every red training image is mostly red: labels line up with pixels.
    red = images[labels == dataset.classes.index("red")].astype(float)
    assert (red[:, 0].mean() > red[:, 1].mean() + 100) and (red[:, 0].mean() > red[:, 2].mean() + 100)
    assert (dataset.folder / "mean.png").exists()
    assert not (dataset.folder / "extracted").exists(), "the extracted upload is cleaned away"


def test_it_reports_the_same_split_for_the_same_seed(celery_worker, alice_api, colour_zip):
    first = wait_dataset(upload(alice_api, colour_zip).json()["id"])
    second = wait_dataset(upload(alice_api, colour_zip).json()["id"])

    a_images, a_labels = open_split(first.folder, "val")
    b_images, b_labels = open_split(second.folder, "val")
    assert np.array_equal(a_labels, b_labels) and np.array_equal(a_images, b_images)


def test_it_shows_progress_and_counts_in_the_api(celery_worker, alice_api, colour_zip):
    pk = upload(alice_api, colour_zip).json()["id"]
    wait_dataset(pk)

    body = alice_api.get(f"/api/v1/datasets/{pk}/").json()

    assert body["progress"] == 1.0
    assert body["image_shape"] == [3, 10, 12]
    assert body["class_counts"]["train"]["red"] == 7
    assert len(body["thumbnails"]["red"]) == 8
    assert body["mean_image_url"].endswith("/mean.png")


def test_it_creates_the_example_digits_dataset(celery_worker, alice_api):
    response = alice_api.post("/api/v1/datasets/example/")
    assert response.status_code == 201

    dataset = wait_dataset(response.json()["id"])

    assert dataset.status == "ready", dataset.error
    assert dataset.classes == [str(d) for d in range(10)]
    assert sum(dataset.split_counts.values()) == 1797
    assert dataset.image_shape == [1, 28, 28]
    assert Dataset.objects.filter(owner__username="alice").count() == 1
