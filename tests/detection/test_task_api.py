"""Detection through the API: `infer` answers boxes in the upload's own pixels above the asked
score_threshold; `evaluate` stores the task's report. The backend is the edge: a stand-in that
answers, for each image, the detections its snapshot file lists (the image's top-left pixel names
its row), so the boxes are known; serving and evaluation run the workbench's own code in-process."""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.test import override_settings
from PIL import Image

from datasets.models import Dataset
from jobs.models import TrainingJob
from training.contract import TrainingBackend

CLASSES = ["cat", "dog"]
SIZE = 32
BOXES = {"BACKEND": "tests.detection.test_task_api.ListedBoxesBackend"}


class ListedBoxesBackend(TrainingBackend):
    """Answers each image with the (D, 6) detections of row `image[0, 0, 0]` of its snapshot (.npy)."""

    framework = "none"
    tasks = ("detection",)

    def devices(self) -> list[str]:
        return ["cpu"]

    def train(self, plan: Any, reporter: Any) -> str:
        raise NotImplementedError("a stand-in answers; it does not train")

    def infer(self, snapshot: Path, images: np.ndarray) -> np.ndarray:
        table = np.load(snapshot)
        return table[np.clip(images[:, 0, 0, 0].astype(int), 0, len(table) - 1)]


def rows(*found: list[float], d: int = 100) -> np.ndarray:
    out = np.zeros((d, 6), np.float32)
    out[:, 5] = -1
    if found:
        out[: len(found)] = found
    return out


def boxes(*true: list[float], k: int = 3) -> np.ndarray:
    out = np.zeros((k, 6), np.float32)
    out[:, 0] = -1
    if true:
        out[: len(true)] = true
    return out


# Each val image's detections (network input pixels) and true boxes (stored image pixels: the same).
DETECTIONS = np.stack([rows([8, 8, 16, 16, 0.9, 0], [20, 4, 30, 12, 0.4, 1], [1, 1, 3, 3, 0.1, 1]),
                       rows([0, 0, 10, 10, 0.8, 1]),
                       rows()])
TRUTH = np.stack([boxes([0, 8, 8, 16, 16, 0], [1, 20, 4, 30, 12, 0]),
                  boxes([0, 16, 16, 30, 30, 0]),
                  boxes()])


def detection_job(owner: Any, resize_mode: str = "squash") -> TrainingJob:
    """A done detection job on a 32x32 dataset of 3 val images (image i's pixels all i), answered by the stand-in."""
    dataset = Dataset.objects.create(
        owner=owner, name="boxes", source="example", source_name="boxes", task="detection", image_width=SIZE,
        image_height=SIZE, channels=3, resize_mode=resize_mode, val_percent=50, test_percent=0, seed=0,
        status="ready", classes=CLASSES, split_counts={"train": 3, "val": 3, "test": 0})
    dataset.folder.mkdir(parents=True, exist_ok=True)
    images = np.broadcast_to(np.arange(3, dtype=np.uint8)[:, None, None, None], (3, 3, SIZE, SIZE)).copy()
    for split in ("train", "val"):
        np.save(dataset.folder / f"{split}_images.npy", images)
        np.save(dataset.folder / f"{split}_boxes.npy", TRUTH)
    np.save(dataset.folder / "mean.npy", np.zeros((3, SIZE, SIZE), np.float32))
    job = TrainingJob.objects.create(owner=owner, dataset=dataset, name="detector", network="centernet", network_spec={},
                                     backend="boxes", status="done")
    (job.folder / "snapshots").mkdir(parents=True, exist_ok=True)
    np.save(job.folder / "snapshots" / "epoch_3.npy", DETECTIONS)
    job.snapshots.create(epoch=3.0, path="snapshots/epoch_3.npy")
    return job


@pytest.fixture
def boxes_backend():  # type: ignore[no-untyped-def]
    from django.conf import settings

    with override_settings(TRAINING_BACKENDS={**settings.TRAINING_BACKENDS, "boxes": BOXES}):
        yield


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serving requests answered in this process by the serving worker's own code, through JSON as the
    broker carries them (the broker and the worker process are the edge: tests/serving has them)."""
    from jobs.inference import classify_on_worker
    from serving import wire

    def ask(name: str, backend: str, weights: str, *, images: np.ndarray, started: float | None = None) -> Any:
        assert name == "jobs.classify"
        return json.loads(json.dumps(classify_on_worker(backend=backend, weights=weights, images=wire.pack(images))))

    monkeypatch.setattr("jobs.inference.client.ask", ask)


def upload(width: int, height: int, value: int = 0) -> io.BytesIO:
    """A flat image of `value` (the stand-in's row) at the upload's own size."""
    file = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), value, np.uint8)).save(file, format="PNG")
    file.seek(0)
    file.name = "photo.png"
    return file


pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("boxes_backend")]


def test_infer_answers_the_boxes_in_the_uploads_own_pixels(alice, alice_api, served):
    job = detection_job(alice)

    response = alice_api.post(f"/api/v1/jobs/{job.pk}/infer/", {"image": upload(64, 48)}, format="multipart")

    assert response.status_code == 200, response.json()
    answer = response.json()
    assert set(answer) == {"task", "width", "height", "boxes", "score_threshold", "epoch", "preprocessed"}
    assert (answer["task"], answer["width"], answer["height"], answer["epoch"]) == ("detection", 64, 48, 3.0)
    # Squashed 64x48 to 32x32: x doubles, y grows by 1.5; the 0.4 dog is kept at the default 0.3, the 0.1 one not.
    assert answer["boxes"] == [
        {"label": "cat", "class_index": 0, "score": pytest.approx(0.9), "box": [16, 12, 32, 24]},
        {"label": "dog", "class_index": 1, "score": pytest.approx(0.4), "box": [40, 6, 60, 18]},
    ]
    assert answer["score_threshold"] == 0.3


def test_infer_leaves_out_the_boxes_under_the_asked_threshold(alice, alice_api, served):
    job = detection_job(alice)

    strict = alice_api.post(f"/api/v1/jobs/{job.pk}/infer/", {"image": upload(64, 48), "score_threshold": 0.5},
                            format="multipart").json()
    every = alice_api.post(f"/api/v1/jobs/{job.pk}/infer/", {"image": upload(64, 48), "score_threshold": 0},
                           format="multipart").json()
    refused = alice_api.post(f"/api/v1/jobs/{job.pk}/infer/", {"image": upload(64, 48), "score_threshold": 1.5},
                             format="multipart")

    assert [b["score"] for b in strict["boxes"]] == [pytest.approx(0.9)]
    assert [b["score"] for b in every["boxes"]] == [pytest.approx(0.9), pytest.approx(0.4), pytest.approx(0.1)]
    assert refused.status_code == 400 and "score_threshold" in refused.json()["detail"]


def test_infer_on_a_crop_dataset_adds_back_the_cut_off_margin(alice, alice_api, served):
    job = detection_job(alice, resize_mode="crop")

    answer = alice_api.post(f"/api/v1/jobs/{job.pk}/infer/", {"image": upload(96, 48)}, format="multipart").json()

    # 96x48 scaled by 1/1.5 to 64x32, its middle 32 columns seen: 16 columns cut off on the left.
    assert answer["boxes"][0]["box"] == [36, 12, 48, 24]


def test_evaluate_stores_the_detection_report(alice, alice_api, monkeypatch):
    from results.evaluation import evaluation_run
    from results.models import Evaluation
    from training.vision_tasks import vision_task

    monkeypatch.setattr("results.work.send", lambda *args, **kwargs: None)
    job = detection_job(alice)

    response = alice_api.post(f"/api/v1/jobs/{job.pk}/evaluate/", {"split": "val"}, format="json")
    assert response.status_code == 201, response.json()
    evaluation_run(evaluation_id=response.json()["id"])
    evaluation = Evaluation.objects.get(pk=response.json()["id"])
    body = alice_api.get(f"/api/v1/jobs/{job.pk}/evaluations/{evaluation.pk}/").json()

    assert evaluation.status == "done", evaluation.error
    result = body["result"]
    expected = vision_task("detection").evaluation_report(DETECTIONS, TRUTH, CLASSES, score_threshold=0.3)
    assert result == json.loads(json.dumps({**expected, "epoch": 3.0}))
    assert result["task"] == "detection" and result["images"] == 3 and result["epoch"] == 3.0
    # cat: image 0's found, image 1's missed: AP@0.5 51/101. dog: ranked a false one in image 1 (0.8),
    # the true one (0.4), a false one (0.1): precision 1/2 at every recall point.
    assert result["per_class"][0]["ap_50"] == pytest.approx(51 / 101) and result["per_class"][1]["ap_50"] == pytest.approx(0.5)
    assert [w["index"] for w in result["worst"]] == [1, 0, 2]  # image 1: F1 0; the others perfect


def test_classifying_many_images_is_refused_for_a_detection_job(alice, alice_api):
    job = detection_job(alice)

    response = alice_api.post(f"/api/v1/jobs/{job.pk}/classify-many/", {"listing": "a.png"}, format="json")

    assert response.status_code == 409, response.json()
    assert "not available for detection jobs" in response.json()["error"]


def test_the_jobs_list_sorts_by_best_map_and_the_table_offers_its_columns(alice, alice_api, client):
    jobs = [detection_job(alice) for _ in range(3)]
    for job, best in zip(jobs, (0.41, 0.8, None), strict=True):
        job.best = {} if best is None else {"val_map_50": best, "val_map": best / 2}
        job.save(update_fields=["best"])
    client.force_login(alice)

    ordered = alice_api.get("/api/v1/jobs/?ordering=-best_val_map_50").json()["results"]
    page = client.get("/jobs/?columns=best_val_map_50,best_val_map").content.decode()

    assert [j["id"] for j in ordered] == [jobs[1].pk, jobs[0].pk, jobs[2].pk]  # missing values last
    assert "Best val mAP@0.5" in page and "0.800" in page and "0.400" in page
