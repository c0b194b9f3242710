"""Evaluating a segmentation job's split: the stored figures are metrics.evaluation_report's on the
model's own outputs for the split's masks, though the worker tallied them a few images at a time,
and the page shows them with the worst images' masks. The evaluation runs in this process (the
worker's service itself); tests/results has it through a real Celery worker."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from results.evaluation import evaluation_run
from results.models import Evaluation
from tests.segmentation.conftest import CLASSES, segmentation_job
from training.torch.models import load_snapshot
from training.vision_tasks.segmentation.metrics import WORST, evaluation_report, mask_from_png

pytestmark = pytest.mark.django_db


@pytest.fixture
def evaluated(alice, alice_api, trained, monkeypatch):  # type: ignore[no-untyped-def]
    """A val evaluation of the latest snapshot, run three images to a batch (the split has eight)."""
    monkeypatch.setattr("results.work.send", lambda *args, **kwargs: None)
    monkeypatch.setattr("results.evaluation.OUTPUT_BYTES", 3 * len(CLASSES) * 16 * 16 * 4)
    job = segmentation_job(alice, trained)
    response = alice_api.post(f"/api/v1/jobs/{job.pk}/evaluate/", {"split": "val"}, format="json")
    assert response.status_code == 201, response.json()
    evaluation_run(evaluation_id=response.json()["id"])
    return Evaluation.objects.get(pk=response.json()["id"])


def model_outputs(job) -> np.ndarray:  # type: ignore[no-untyped-def]
    model, mean = load_snapshot(job.folder / job.snapshots.order_by("-epoch").first().path)
    images = np.load(job.dataset.folder / "val_images.npy")
    with torch.inference_mode():
        return torch.softmax(model((torch.from_numpy(images).float() - mean) / 255), dim=1).numpy()


def test_the_figures_are_the_reports_on_the_same_outputs_and_masks(evaluated):
    job = evaluated.job
    masks = np.load(job.dataset.folder / "val_masks.npy")

    expected = evaluation_report(model_outputs(job), masks, CLASSES, ignore_index=255)

    result = evaluated.result
    assert evaluated.status == "done", evaluated.error
    assert result["task"] == "segmentation" and result["epoch"] == 12.0 and result["count"] == len(masks) == 8
    assert result["confusion"] == expected["confusion"]
    assert sum(map(sum, result["confusion"])) == int((masks != 255).sum())  # unlabelled pixels count nowhere
    assert result["pixel_accuracy"] == pytest.approx(expected["pixel_accuracy"])
    assert result["mean_iou"] == pytest.approx(expected["mean_iou"]) and result["mean_iou"] > 0.7
    assert result["per_class"] == expected["per_class"]  # from the same confusion matrix
    assert [(w["index"], w["iou"]) for w in result["worst"]] == [(w["index"], pytest.approx(w["iou"]))
                                                                  for w in expected["worst"]]
    assert len(result["worst"]) == min(WORST, 8)


def test_the_worst_images_keep_their_predicted_masks(evaluated):
    predicted = model_outputs(evaluated.job).argmax(1)

    for worst in evaluated.result["worst"]:
        assert np.array_equal(mask_from_png(worst["mask"]), predicted[worst["index"]])


def test_the_page_shows_the_figures_the_confusion_and_the_worst_images(evaluated, client, alice):
    client.force_login(alice)

    page = client.get(f"/jobs/{evaluated.job.pk}/evaluations/{evaluated.pk}/").content.decode()

    result = evaluated.result
    assert f'id="mean-iou">{result["mean_iou"]:.4f}' in page and f'id="pixel-accuracy">{result["pixel_accuracy"]:.4f}' in page
    assert 'id="per-class"' in page and 'id="confusion-chart"' in page and 'id="confusion-data"' in page
    assert page.count('class="thumb-row worst"') == len(result["worst"])
    assert page.count('alt="predicted mask') == len(result["worst"]) and "rgb(220, 40, 40)" in page
    first = result["worst"][0]["index"]
    assert f"/datasets/{evaluated.job.dataset.pk}/masks/val/{first}.png" in page


def test_the_api_answers_the_result_with_its_task(evaluated, alice_api, bob_api):
    url = f"/api/v1/jobs/{evaluated.job.pk}/evaluations/{evaluated.pk}/"

    answer = alice_api.get(url).json()

    assert answer["result"]["task"] == "segmentation"
    assert {"mean_iou", "pixel_accuracy", "per_class", "confusion", "worst"} <= set(answer["result"])
    assert bob_api.get(url).status_code == 404
