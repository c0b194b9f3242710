"""Detection's pages through Django's client: the detect page draws every box the detector kept with
a score-threshold slider (the page hides the low ones itself); the job page plots mAP and each part
of the loss; the evaluation page has the mAP figures, the per-class table, the PR curves' data and
the worst images with their true and predicted boxes. The backend is the stand-in of test_task_api."""
from __future__ import annotations

import json
import re

import pytest

from tests.detection.test_task_api import boxes_backend, detection_job, served, upload  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("boxes_backend")]


def script_json(page: str, element_id: str):  # type: ignore[no-untyped-def]
    found = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', page, re.S)
    assert found, f"no {element_id} data on the page"
    return json.loads(found.group(1))


@pytest.mark.usefixtures("served")
def test_the_detect_page_draws_every_box_with_a_slider_at_the_asked_threshold(alice, client):
    job = detection_job(alice)
    client.force_login(alice)

    empty = client.get(f"/jobs/{job.pk}/classify/")
    response = client.post(f"/jobs/{job.pk}/classify/", {"image": upload(64, 48), "score_threshold": "0.5"})

    assert empty.status_code == 200 and "Detect with" in empty.content.decode()
    assert 'name="score_threshold"' in empty.content.decode() and 'id="detect-result"' not in empty.content.decode()
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="detect-result"' in page and "js/detect.js" in page and "js/boxes.js" in page
    assert re.search(r'<input type="range" id="score-threshold" min="0" max="1" step="0.01" value="0.50">', page)
    assert 'id="detect-canvas"' in page and 'src="data:image/jpeg;base64,' in page and "64x48 pixels" in page
    drawing = script_json(page, "detect-drawing")
    assert (drawing["width"], drawing["height"]) == (64, 48)
    # Every box the detector kept, the one under the threshold too: the slider hides it client-side.
    assert [(b["label"], round(b["score"], 2), b["box"]) for b in drawing["boxes"]] == [
        ("cat", 0.9, [16, 12, 32, 24]), ("dog", 0.4, [40, 6, 60, 18]), ("dog", 0.1, [2, 1.5, 6, 4.5])]
    assert all(b["colour"].startswith("rgb(") for b in drawing["boxes"])
    assert page.count('data-score="') == 3


@pytest.mark.usefixtures("served")
def test_the_detect_page_refuses_a_threshold_outside_0_to_1(alice, client):
    job = detection_job(alice)
    client.force_login(alice)

    response = client.post(f"/jobs/{job.pk}/classify/", {"image": upload(64, 48), "score_threshold": "2"})

    assert response.status_code == 400
    assert 'id="detect-result"' not in response.content.decode()
    assert "less than or equal to 1" in response.content.decode()


def test_the_job_page_plots_map_and_each_part_of_the_loss(alice, client):
    job = detection_job(alice)
    client.force_login(alice)

    page = client.get(f"/jobs/{job.pk}/").content.decode()

    assert [m["key"] for m in script_json(page, "job-metrics")] == ["val_map_50", "val_map"]
    assert [m["label"] for m in script_json(page, "job-metrics")] == ["mAP@0.5", "mAP@0.5:0.95"]
    assert script_json(page, "job-loss-parts") == ["loss_heatmap", "loss_size", "loss_offset"]
    assert "Loss, mAP@0.5 and mAP@0.5:0.95" in page
    assert 'id="infer-link"' in page  # the detect page exists
    assert "mAP@0.5 and mAP@0.5:0.95, per-class AP" in page  # the evaluate box says what it gives
    assert 'id="classify-many"' not in page


def test_a_classification_job_page_has_no_loss_parts(alice, client):
    from jobs.models import TrainingJob
    from tests.jobs.test_vision_tasks import _dataset

    job = TrainingJob.objects.create(owner=alice, dataset=_dataset(alice), name="lenet", network="lenet",
                                     network_spec={}, status="done")
    client.force_login(alice)

    page = client.get(f"/jobs/{job.pk}/").content.decode()

    assert script_json(page, "job-loss-parts") == []
    assert 'id="classify-many"' in page


def test_the_evaluation_page_shows_the_figures_the_curves_and_the_worst_images_boxes(alice, client, monkeypatch):
    from results.evaluation import evaluation_run, evaluation_start

    monkeypatch.setattr("results.work.send", lambda *args, **kwargs: None)
    job = detection_job(alice)
    evaluation, _ = evaluation_start(job=job, split="val")
    evaluation_run(evaluation_id=evaluation.pk)
    client.force_login(alice)

    page = client.get(f"/jobs/{job.pk}/evaluations/{evaluation.pk}/").content.decode()

    assert 'id="map-50"' in page and 'id="map"' in page and "mAP@0.5:0.95" in page
    rows = re.findall(r"<tr><td>(\w+)</td>\s*<td>([\d.]+)</td>", page)
    assert rows == [("cat", "0.505"), ("dog", "0.500")]
    assert list(script_json(page, "pr-curves-data")) == ["cat", "dog"]
    assert 'id="pr-curves"' in page and "js/detection_evaluation.js" in page and "vendor/plotly.min.js" in page
    drawing = script_json(page, "worst-boxes")
    assert (drawing["width"], drawing["height"]) == (32, 32)
    # Image 1, the worst: its true cat (green) and the false dog it predicted (red, with its score).
    assert drawing["images"]["1"] == [
        {"box": [16.0, 16.0, 30.0, 30.0], "colour": "#2f9e44", "text": "cat", "dash": False, "width": 5, "below": True},
        {"box": [0.0, 0.0, 10.0, 10.0], "colour": "#e03131", "text": "dog 0.80"}]
    assert re.findall(r'<figure class="worst" data-index="(\d+)">', page) == ["1", "0", "2"]
    assert f'/datasets/{job.dataset.pk}/images/val/1.png' in page
    assert client.get(f"/datasets/{job.dataset.pk}/images/val/1.png").status_code == 200


def test_the_use_result_card_lists_a_detection_evaluation_by_its_map(alice, client, monkeypatch):
    from results.evaluation import evaluation_run, evaluation_start

    monkeypatch.setattr("results.work.send", lambda *args, **kwargs: None)
    job = detection_job(alice)
    evaluation, _ = evaluation_start(job=job, split="val")
    evaluation_run(evaluation_id=evaluation.pk)
    client.force_login(alice)

    page = client.get(f"/jobs/{job.pk}/").content.decode()

    assert re.search(r"val @ epoch 3</a>\s*<span class=\"status status-done\">done</span> mAP@0.5 0.50", page)
