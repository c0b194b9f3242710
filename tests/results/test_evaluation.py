"""Evaluation: the stored numbers agree with an independent computation on the same predictions."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, top_k_accuracy_score

from results.models import Evaluation
from tests.conftest import wait_for
from tests.jobs.test_training_flow import ready_colours, start, wait_job
from training.vision_tasks.classification.metrics import evaluation_report


def test_it_computes_metrics_like_scikit_learn():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(6), size=300).astype(np.float32)
    labels = rng.integers(0, 6, size=300)
    classes = [f"c{i}" for i in range(6)]

    report = evaluation_report(probabilities, labels, classes)

    predicted = probabilities.argmax(1)
    assert report["confusion"] == confusion_matrix(labels, predicted, labels=range(6)).tolist()
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=range(6),
                                                                     zero_division=0)
    assert [r["precision"] for r in report["per_class"]] == pytest.approx(precision.tolist())
    assert [r["recall"] for r in report["per_class"]] == pytest.approx(recall.tolist())
    assert [r["f1"] for r in report["per_class"]] == pytest.approx(f1.tolist())
    assert [r["support"] for r in report["per_class"]] == support.tolist()
    assert report["top1"] == pytest.approx((predicted == labels).mean())
    assert report["top5"] == pytest.approx(top_k_accuracy_score(labels, probabilities, k=5, labels=range(6)))
    mistakes = report["mistakes"]
    assert all(m["predicted"] != m["true"] for m in mistakes)
    assert [m["confidence"] for m in mistakes] == sorted((m["confidence"] for m in mistakes), reverse=True)
    best_for_2 = [i["index"] for i in report["top_per_class"][2]]
    assert best_for_2 == np.argsort(-probabilities[:, 2], kind="stable")[:8].tolist()


@pytest.mark.django_db(transaction=True)
def test_it_evaluates_a_split_and_matches_an_independent_computation(celery_worker, alice_api):
    import torch

    from datasets.ingest.store import open_split
    from training.torch.models import load_snapshot

    dataset = ready_colours(alice_api, per_class=30)
    job = wait_job(start(alice_api, dataset, epochs=2)["id"])

    response = alice_api.post(f"/api/v1/jobs/{job.pk}/evaluate/", {"split": "val"}, format="json")

    assert response.status_code == 201, response.json()
    pk = response.json()["id"]
    evaluation = wait_for(lambda: (e := Evaluation.objects.get(pk=pk)).is_finished and e, 120, "the evaluation")
    assert evaluation.status == "done", evaluation.error
    result = evaluation.result
    snapshot = job.snapshots.order_by("-epoch").first()
    model, mean = load_snapshot(job.folder / snapshot.path)
    images, labels = open_split(dataset.folder, "val")
    with torch.inference_mode():
        predicted = model((torch.from_numpy(np.asarray(images)).float() - mean) / 255).argmax(1).numpy()
    assert result["confusion"] == confusion_matrix(labels, predicted, labels=range(3)).tolist()
    assert sum(map(sum, result["confusion"])) == dataset.split_counts["val"]
    assert result["top1"] == pytest.approx((predicted == labels).mean())
    assert result["top5"] == 1.0  # three classes: the truth is always in the top five
    assert result["task"] == "classification"  # the report is the vision task's


@pytest.mark.django_db(transaction=True)
def test_it_returns_the_stored_evaluation_the_second_time(celery_worker, alice_api, client, alice):
    dataset = ready_colours(alice_api)
    job = wait_job(start(alice_api, dataset, epochs=1)["id"])
    first = alice_api.post(f"/api/v1/jobs/{job.pk}/evaluate/", {"split": "val"}, format="json").json()
    wait_for(lambda: Evaluation.objects.get(pk=first["id"]).is_finished, 120, "the evaluation")

    again = alice_api.post(f"/api/v1/jobs/{job.pk}/evaluate/", {"split": "val"}, format="json")

    assert again.status_code == 200 and again.json()["id"] == first["id"]
    assert again.json()["status"] == "done" and again.json()["result"]["count"] == dataset.split_counts["val"]
    client.force_login(alice)
    page = client.get(f"/jobs/{job.pk}/evaluations/{first['id']}/").content.decode()
    assert "Confusion matrix" in page and "top-1 accuracy" in page


@pytest.mark.django_db
def test_it_refuses_to_evaluate_a_job_that_is_not_done(alice_api, running_job):
    from jobs.models import TrainingJob

    job = running_job

    response = alice_api.post(f"/api/v1/jobs/{job.pk}/evaluate/", {"split": "val"}, format="json")

    assert response.status_code == 409 and "once it is done" in response.json()["error"]
    TrainingJob.objects.filter(pk=job.pk).update(status="done")
    empty = alice_api.post(f"/api/v1/jobs/{job.pk}/evaluate/", {"split": "test"}, format="json")
    assert empty.status_code == 400 and "empty" in empty.json()["error"]
