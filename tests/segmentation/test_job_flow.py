"""A segmentation job through the real lifecycle: an uploaded archive of images and masks, POST jobs/
with only the dataset and epochs (the U-Net and its own settings), the real Celery worker, live
metrics, abort, resume, and the job page."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from datasets.example import write_shapes
from jobs.models import MetricPoint, TrainingJob
from tests.conftest import wait_dataset, wait_for
from tests.jobs.test_training_flow import wait_job

pytestmark = pytest.mark.django_db(transaction=True)


def shapes_archive(folder: Path, count: int) -> io.BytesIO:
    """The server's shapes example, `count` scenes, zipped as a user would upload it."""
    write_shapes(folder, count=count, seed=1)
    archive = io.BytesIO(Path(shutil.make_archive(str(folder), "zip", folder)).read_bytes())
    archive.name = "shapes.zip"
    return archive


def ready_shapes(client, tmp_path: Path):  # type: ignore[no-untyped-def]
    # 32x32 keeps four U-Net levels and a few seconds an epoch on one busy core.
    response = client.post("/api/v1/datasets/", {
        "name": "Shapes", "archive": shapes_archive(tmp_path / "shapes", 160), "task": "segmentation",
        "image_width": 32, "image_height": 32, "channels": 3, "val_percent": 25, "seed": 1}, format="multipart")
    assert response.status_code == 201, response.json()
    dataset = wait_dataset(response.json()["id"])
    assert dataset.status == "ready", dataset.error
    return dataset


def test_a_unet_job_with_only_a_dataset_trains_aborts_resumes_and_beats_chance(celery_worker, alice_api, alice,
                                                                               client, tmp_path):
    dataset = ready_shapes(alice_api, tmp_path)
    created = alice_api.post("/api/v1/jobs/", {"dataset": dataset.pk, "epochs": 200}, format="json").json()
    pk = created["id"]
    assert (created["network"], created["optimizer"], created["learning_rate"], created["batch_size"]) == (
        "unet", "adam", 0.001, 8)

    wait_for(lambda: TrainingJob.objects.get(pk=pk).snapshots.count() >= 3, 120, "three snapshots")
    assert alice_api.post(f"/api/v1/jobs/{pk}/abort/").status_code == 200
    aborted = wait_job(pk)
    assert aborted.status == "aborted", aborted.error
    last = aborted.snapshots.order_by("-epoch").first().epoch
    TrainingJob.objects.filter(pk=pk).update(epochs=int(last) + 5)
    assert alice_api.post(f"/api/v1/jobs/{pk}/resume/").status_code == 200
    job = wait_job(pk)

    assert job.status == "done", job.error
    body = alice_api.get(f"/api/v1/jobs/{pk}/").json()
    assert body["task"] == "segmentation" and body["epoch"] == int(last) + 5
    assert {"val_mean_iou", "val_pixel_accuracy", "val_mean_iou_epoch", "val_loss"} <= set(body["best"])
    # Chance: every pixel called background, the largest class. Its pixel accuracy is background's share
    # of the val pixels (about 0.82), its mean IoU that share over the 4 classes (about 0.21).
    background = dataset.class_pixels["val"]["background"]
    assert body["best"]["val_pixel_accuracy"] > background
    assert body["best"]["val_mean_iou"] > background / len(dataset.classes) + 0.05
    names = set(MetricPoint.objects.filter(job_id=pk, split="val").values_list("name", flat=True))
    assert names == {"loss", "mean_iou", "pixel_accuracy"}

    client.force_login(alice)
    page = client.get(f"/jobs/{pk}/").content.decode()
    assert "Loss, mean IoU and pixel accuracy" in page and 'id="val-mean-iou"' in page
    assert "Classify an image" not in page

    # Fine-tuning from its snapshot: the same network takes every tensor; another network fits none of them.
    tuned = alice_api.post("/api/v1/jobs/", {"dataset": dataset.pk, "epochs": 1, "pretrained": {"job": pk}},
                           format="json")
    other = alice_api.post("/api/v1/jobs/", {"dataset": dataset.pk, "network": "fcn_resnet18",
                                             "pretrained": {"job": pk}}, format="json")

    assert tuned.status_code == 201, tuned.json()
    report = alice_api.get(f"/api/v1/jobs/{tuned.json()['id']}/").json()["pretrained_report"]
    assert report["rows"] and all(row["action"] == "copied" for row in report["rows"])
    assert other.status_code == 400 and "pretrained" in other.json()["detail"]
    assert "fits this network" in other.json()["error"]
    assert wait_job(tuned.json()["id"]).status == "done"
