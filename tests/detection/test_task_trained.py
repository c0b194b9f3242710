"""Detection's infer and evaluate on a detector the real torch backend trained (tiny generated
shapes, a few convolutions ending in the stride-4 head): the API's boxes are the model's own
decoded boxes put back on the upload's pixels, and land on the shapes; the stored evaluation is
the task's report on the model's own outputs for the split."""
from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from datasets.models import Dataset
from jobs.models import TrainingJob
from tests.detection.generated import class_names, write_detection_dataset
from tests.detection.test_task_api import served  # noqa: F401
from tests.jobs.test_training_extras import Recorder, make_plan
from training.vision_tasks import vision_task

pytestmark = pytest.mark.django_db

SIZE = 32
CLASSES = class_names(2)
SPEC = {"layers": [{"type": "conv2d", "out_channels": 16, "kernel_size": 3, "stride": 2, "padding": 1}, {"type": "relu"},
                   {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "stride": 2, "padding": 1}, {"type": "relu"},
                   {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "padding": 1}, {"type": "relu"},
                   {"type": "conv2d", "out_channels": "num_classes", "kernel_size": 1}]}


@pytest.fixture(scope="session")
def trained_detector(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"dataset", "job"}: 30 epochs on 96 shapes images (one thread), a snapshot at 15 and 30."""
    import torch

    from training.torch.run import train

    root = tmp_path_factory.mktemp("detection-job")
    dataset = write_detection_dataset(root / "dataset", train=96, val=24, seed=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        plan = make_plan(dataset, root / "job", task="detection", input_shape=(3, SIZE, SIZE), classes=CLASSES,
                         network_spec=SPEC, optimizer="adam", learning_rate=0.01, batch_size=8, epochs=30,
                         val_interval=15.0, snapshot_interval=15.0, augmentation={"flip": "horizontal"},
                         preprocessing={"width": SIZE, "height": SIZE, "channels": 3, "resize_mode": "squash", "seed": 0})
        assert train(plan, Recorder()) == "done"
    finally:
        torch.set_num_threads(threads)
    return {"dataset": dataset, "job": root / "job"}


def detection_job(owner: Any, trained: dict[str, Path]) -> TrainingJob:
    dataset = Dataset.objects.create(
        owner=owner, name="shapes", source="example", source_name="shapes", task="detection", image_width=SIZE,
        image_height=SIZE, channels=3, resize_mode="squash", val_percent=20, test_percent=0, seed=0, status="ready",
        classes=CLASSES, split_counts={"train": 96, "val": 24, "test": 0})
    shutil.copytree(trained["dataset"], dataset.folder, dirs_exist_ok=True)
    job = TrainingJob.objects.create(owner=owner, dataset=dataset, name="tiny detector", network="custom",
                                     network_spec=SPEC, status="done")
    shutil.copytree(trained["job"], job.folder, dirs_exist_ok=True)
    for meta in sorted(job.folder.glob("snapshots/epoch_*.json")):
        job.snapshots.create(epoch=json.loads(meta.read_text())["epoch"], path=f"snapshots/{meta.stem}.safetensors")
    return job


def model_outputs(job: TrainingJob, images: np.ndarray) -> np.ndarray:
    from training.torch.models import ModelCache

    return ModelCache().infer(job.folder / job.snapshots.order_by("-epoch").first().path, images)


def test_infer_answers_the_models_boxes_on_the_uploads_pixels_and_they_find_the_shapes(
        alice, alice_api, trained_detector, served):  # noqa: F811
    job = detection_job(alice, trained_detector)
    pixels = np.load(trained_detector["dataset"] / "val_images.npy")[0]  # (3, 32, 32)
    truth = np.load(trained_detector["dataset"] / "val_boxes.npy")[0]
    file = io.BytesIO()
    Image.fromarray(pixels.transpose(1, 2, 0)).resize((64, 96), Image.Resampling.NEAREST).save(file, format="PNG")
    file.seek(0)
    file.name = "shapes.png"

    answer = alice_api.post(f"/api/v1/jobs/{job.pk}/infer/", {"image": file, "score_threshold": 0.3},
                            format="multipart").json()

    # The model's own boxes on the input the answer says the network saw (the upload squashed to 32x32).
    seen = Image.open(io.BytesIO(base64.b64decode(answer["preprocessed"].split(",", 1)[1])))
    network = model_outputs(job, np.asarray(seen.convert("RGB")).transpose(2, 0, 1)[None])[0]
    expected = vision_task("detection").infer_answer(network, CLASSES, score_threshold=0.3)
    assert (answer["width"], answer["height"]) == (64, 96)
    assert [b["label"] for b in answer["boxes"]] == [b["label"] for b in expected["boxes"]]
    assert np.allclose([b["box"] for b in answer["boxes"]],
                       [[x1 * 2, y1 * 3, x2 * 2, y2 * 3] for x1, y1, x2, y2 in (b["box"] for b in expected["boxes"])],
                       atol=1e-3)
    # Each true shape, scaled as the upload was, is found by a box of its class.
    for cls, x1, y1, x2, y2, _ in truth[truth[:, 0] >= 0]:
        scaled = np.array([x1 * 2, y1 * 3, x2 * 2, y2 * 3])
        assert any(b["label"] == CLASSES[int(cls)] and iou(np.array(b["box"]), scaled) > 0.5 for b in answer["boxes"]), \
            (cls, scaled, answer["boxes"])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix, iy = max(0.0, min(a[2], b[2]) - max(a[0], b[0])), max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return float(ix * iy / union)


def test_evaluate_stores_the_report_on_the_models_own_outputs(alice, alice_api, trained_detector, monkeypatch):
    from results.evaluation import evaluation_run
    from results.models import Evaluation

    monkeypatch.setattr("results.work.send", lambda *args, **kwargs: None)
    job = detection_job(alice, trained_detector)

    response = alice_api.post(f"/api/v1/jobs/{job.pk}/evaluate/", {"split": "val"}, format="json")
    evaluation_run(evaluation_id=response.json()["id"])
    evaluation = Evaluation.objects.get(pk=response.json()["id"])

    assert evaluation.status == "done", evaluation.error
    images = np.load(trained_detector["dataset"] / "val_images.npy")
    truth = np.load(trained_detector["dataset"] / "val_boxes.npy")
    expected = vision_task("detection").evaluation_report(model_outputs(job, images), truth, CLASSES,
                                                          score_threshold=0.3)
    result = evaluation.result
    assert result["epoch"] == 30.0 and result["images"] == 24
    assert result["map_50"] == pytest.approx(expected["map_50"]) and result["map"] == pytest.approx(expected["map"])
    assert result["per_class"] == json.loads(json.dumps(expected["per_class"]))
    assert [w["index"] for w in result["worst"]] == [w["index"] for w in expected["worst"]]
    assert result["map_50"] > 0.5, result["map_50"]  # it learnt the shapes
