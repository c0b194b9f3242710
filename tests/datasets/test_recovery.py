"""An ingest whose worker is killed half way is run again by itself and ends ready, with every image."""
from __future__ import annotations

import io

import numpy as np
import pytest

from datasets.ingest.store import open_split
from tests.conftest import Worker, class_images, wait_dataset, wait_in_log, zip_bytes

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_ingest_killed_half_way_finishes_by_itself(restartable_worker: Worker, alice_api):
    restartable_worker.kill()
    restartable_worker.start(WORKBENCH_FAULT_PAUSE="progress:datasets.dataset=120")
    archive = io.BytesIO(zip_bytes(class_images(20)))
    archive.name = "colours.zip"
    response = alice_api.post("/api/v1/datasets/", {"name": "Colours", "archive": archive, "image_width": 8,
                                                    "image_height": 8, "channels": 3, "val_percent": 25, "seed": 1},
                              format="multipart")
    assert response.status_code == 201, response.json()

    wait_in_log(restartable_worker, "at progress:datasets.dataset")
    restartable_worker.kill()
    restartable_worker.start()
    dataset = wait_dataset(response.json()["id"])

    assert dataset.status == "ready", dataset.error
    assert dataset.attempt == 2
    assert dataset.total_images == 60
    images, labels = open_split(dataset.folder, "train")
    assert len(images) == len(labels) == dataset.split_counts["train"]
    assert np.bincount(labels).tolist() == [dataset.class_counts["train"][c] for c in dataset.classes]
    assert not list(dataset.folder.glob("upload*")), "the upload is cleaned up once an attempt has ended"
