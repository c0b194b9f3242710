"""Two datasets from the bundled digits: a big one to pretrain on and a small disjoint one to fine-tune on."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from jobs.models import TrainingJob
from tests.conftest import OUTCOME_SECONDS, wait_dataset, wait_for, zip_bytes


def digits_zip(*, keep, classes: tuple[int, ...] = tuple(range(10))) -> bytes:  # type: ignore[no-untyped-def]
    """A zip of class folders with the digits whose index passes `keep`."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    members = {}
    for index, (pixels, target) in enumerate(zip(digits.images, digits.target)):
        if int(target) in classes and keep(index):
            buffer = io.BytesIO()
            Image.fromarray(np.round(pixels * 255 / 16).astype(np.uint8), mode="L").save(buffer, format="PNG")
            members[f"{int(target)}/{index:04d}.png"] = buffer.getvalue()
    return zip_bytes(members)


def upload(client, name: str, data: bytes, val_percent: int):  # type: ignore[no-untyped-def]
    archive = io.BytesIO(data)
    archive.name = f"{name}.zip"
    response = client.post("/api/v1/datasets/", {"name": name, "archive": archive, "image_width": 8,
                                                 "image_height": 8, "channels": 1, "val_percent": val_percent,
                                                 "seed": 1}, format="multipart")
    assert response.status_code == 201, response.json()
    dataset = wait_dataset(response.json()["id"])
    assert dataset.status == "ready", dataset.error
    return dataset


def big_digits(client):  # type: ignore[no-untyped-def]
    return upload(client, "Digits (big)", digits_zip(keep=lambda i: i % 5 != 0), 10)


def five_digits(client):  # type: ignore[no-untyped-def]
    return upload(client, "Digits 0-4", digits_zip(keep=lambda i: i % 5 != 0, classes=(0, 1, 2, 3, 4)), 10)


def small_digits(client):  # type: ignore[no-untyped-def]
    """The other fifth of the digits, most of it kept for validation: about 11 training images per class."""
    return upload(client, "Digits (small)", digits_zip(keep=lambda i: i % 5 == 0), 70)


def train(client, dataset, **fields):  # type: ignore[no-untyped-def]
    body = {"dataset": dataset.pk, "network": "lenet", "epochs": 1, "batch_size": 16, "learning_rate": 0.02,
            "seed": 5, **fields}
    response = client.post("/api/v1/jobs/", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def wait_job(pk: int, timeout: float = OUTCOME_SECONDS) -> TrainingJob:
    def finished():  # type: ignore[no-untyped-def]
        job = TrainingJob.objects.get(pk=pk)
        return job if not job.is_active else None

    job = wait_for(finished, timeout, f"job {pk} to finish")
    assert job.status == "done", job.error  # type: ignore[union-attr]
    return job  # type: ignore[return-value]
