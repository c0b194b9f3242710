"""A detection job through the real lifecycle: an uploaded YOLO archive of the server's shapes, POST
jobs/ with only the dataset and epochs (centernet and its own settings), the real Celery worker, live
mAP and loss parts, abort, resume, the job page, and a fine-tune from its snapshot."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from datasets.example import write_detection_zip
from jobs.models import MetricPoint, TrainingJob
from tests.conftest import wait_dataset, wait_for
from tests.jobs.test_training_flow import wait_job

pytestmark = pytest.mark.django_db(transaction=True)


def ready_shapes(client, tmp_path: Path):  # type: ignore[no-untyped-def]
    write_detection_zip(tmp_path / "shapes.zip", count=160, seed=1)
    archive = io.BytesIO((tmp_path / "shapes.zip").read_bytes())
    archive.name = "shapes.zip"
    # Half the example's size: boxes of 4 to 20 pixels at stride 4, a few seconds an epoch on one busy core.
    response = client.post("/api/v1/datasets/", {
        "name": "Shapes", "archive": archive, "task": "detection", "image_width": 64, "image_height": 48,
        "channels": 3, "val_percent": 25, "seed": 1}, format="multipart")
    assert response.status_code == 201, response.json()
    dataset = wait_dataset(response.json()["id"])
    assert dataset.status == "ready", dataset.error
    return dataset


def test_a_centernet_job_with_only_a_dataset_trains_aborts_resumes_and_finds_the_shapes(celery_worker, alice_api,
                                                                                        alice, client, tmp_path):
    dataset = ready_shapes(alice_api, tmp_path)
    assert dataset.box_format == "yolo" and set(dataset.classes) == {"circle", "square", "triangle"}
    created = alice_api.post("/api/v1/jobs/", {"dataset": dataset.pk, "epochs": 200}, format="json").json()
    pk = created["id"]
    assert (created["network"], created["optimizer"], created["learning_rate"], created["batch_size"]) == (
        "centernet", "adamw", 0.002, 8)

    wait_for(lambda: TrainingJob.objects.get(pk=pk).snapshots.count() >= 3, 180, "three snapshots")
    assert alice_api.post(f"/api/v1/jobs/{pk}/abort/").status_code == 200
    aborted = wait_job(pk)
    assert aborted.status == "aborted", aborted.error
    last = aborted.snapshots.order_by("-epoch").first().epoch
    TrainingJob.objects.filter(pk=pk).update(epochs=int(last) + 6)
    assert alice_api.post(f"/api/v1/jobs/{pk}/resume/").status_code == 200
    job = wait_job(pk)

    assert job.status == "done", job.error
    body = alice_api.get(f"/api/v1/jobs/{pk}/").json()
    assert body["task"] == "detection" and body["epoch"] == int(last) + 6
    assert {"val_map_50", "val_map", "val_map_50_epoch", "val_loss"} <= set(body["best"])
    # Chance is 0: boxes anywhere else than on the shapes find none of them.
    assert body["best"]["val_map_50"] > 0.2, body["best"]
    val = set(MetricPoint.objects.filter(job_id=pk, split="val").values_list("name", flat=True))
    train = set(MetricPoint.objects.filter(job_id=pk, split="train").values_list("name", flat=True))
    assert val == {"loss", "map_50", "map"}
    assert {"loss", "loss_heatmap", "loss_size", "loss_offset", "lr"} <= train

    client.force_login(alice)
    page = client.get(f"/jobs/{pk}/").content.decode()
    assert "mAP@0.5" in page and "Classify an image" not in page

    # Fine-tuning from its snapshot: centernet takes every tensor of it.
    tuned = alice_api.post("/api/v1/jobs/", {"dataset": dataset.pk, "epochs": 1, "pretrained": {"job": pk}},
                           format="json")
    assert tuned.status_code == 201, tuned.json()
    report = alice_api.get(f"/api/v1/jobs/{tuned.json()['id']}/").json()["pretrained_report"]
    assert report["rows"] and all(row["action"] == "copied" for row in report["rows"]), [r for r in report["rows"] if r["action"] != "copied"]
    finished = wait_job(tuned.json()["id"])
    assert finished.status == "done", finished.error
    # One epoch from the trained weights scores as a trained detector, not as one starting afresh.
    assert finished.best["val_map_50"] > 0.2, finished.best
