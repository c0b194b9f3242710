"""Fine-tuning end to end: API → real Celery worker → torch backend, from a previous job's snapshot."""
from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from jobs.models import Snapshot, TrainingJob
from jobs.selectors import job_log_text
from tests.pretrained.digits import big_digits, five_digits, small_digits, train, wait_job

pytestmark = pytest.mark.django_db(transaction=True)

FIGURES: dict[str, float] = {}


def test_it_fine_tunes_from_a_previous_job_far_better_than_from_scratch(celery_worker, alice_api, bob_api):
    big, small = big_digits(alice_api), small_digits(alice_api)
    source = wait_job(train(alice_api, big, epochs=3)["id"])

    scratch = wait_job(train(alice_api, small)["id"])
    created = train(alice_api, small, pretrained={"job": source.pk})
    tuned = wait_job(created["id"])

    FIGURES.update(source=source.latest["val_accuracy"], scratch=scratch.latest["val_accuracy"],
                   tuned=tuned.latest["val_accuracy"])
    print(f"\nfine-tune vs scratch after 1 epoch on the small digits: {FIGURES}")
    assert tuned.latest["val_accuracy"] >= scratch.latest["val_accuracy"] + 0.25, FIGURES
    body = alice_api.get(f"/api/v1/jobs/{tuned.pk}/").json()
    assert body["pretrained"]["job"] == source.pk and body["pretrained"]["epoch"] == 3.0
    assert body["pretrained_report"]["counts"]["copied"] == len(body["pretrained_report"]["rows"])
    log = job_log_text(tuned)
    assert f"Copied 8 tensors from job {source.pk} epoch 3; re-made 0; 0 left new." in log


def test_it_refuses_bob_a_fine_tune_from_alices_job(celery_worker, alice_api, bob_api):
    small = small_digits(alice_api)
    source = wait_job(train(alice_api, small)["id"])
    bobs = small_digits(bob_api)

    response = bob_api.post("/api/v1/jobs/", {"dataset": bobs.pk, "network": "lenet",
                                              "pretrained": {"job": source.pk}}, format="json")

    assert response.status_code == 400
    assert "pretrained" in response.json()["detail"]
    assert bob_api.get(f"/api/v1/pretrained/compatibility/?dataset={bobs.pk}&network=lenet&job={source.pk}"
                       ).status_code == 400


def test_it_remakes_the_classifier_and_keeps_a_frozen_backbone_unchanged(celery_worker, alice_api):
    five, small = five_digits(alice_api), small_digits(alice_api)
    source = wait_job(train(alice_api, five, epochs=2)["id"])

    report = alice_api.get(f"/api/v1/pretrained/compatibility/?dataset={small.pk}&network=lenet&job={source.pk}")
    assert report.status_code == 200, report.json()
    assert "classifier: 5 → 10 classes" in report.json()["summary"]
    tuned = wait_job(train(alice_api, small, pretrained={"job": source.pk, "epoch": 2}, freeze_epochs=-1,
                           epochs=2)["id"])

    before = load_file(source.folder / "snapshots" / "epoch_2.safetensors")
    after = load_file(tuned.folder / "snapshots" / "epoch_2.safetensors")
    for name in ("0.weight", "0.bias", "2.weight", "2.bias", "5.weight", "5.bias"):
        assert after[name].equal(before[name]), name
    assert after["7.weight"].shape == (10, 500) and before["7.weight"].shape == (5, 500)
    assert tuned.best["val_accuracy"] > 0.3
    assert "re-made 2 (7.weight, 7.bias)" in job_log_text(tuned)


def test_it_unfreezes_after_freeze_epochs_and_a_resume_loads_its_own_snapshot(celery_worker, alice_api):
    small = small_digits(alice_api)
    source = wait_job(train(alice_api, small)["id"])
    tuned = wait_job(train(alice_api, small, pretrained={"job": source.pk}, freeze_epochs=1, epochs=2,
                           pretrained_lr_mult=2.0)["id"])

    before = load_file(source.folder / "snapshots" / "epoch_1.safetensors")
    first = load_file(tuned.folder / "snapshots" / "epoch_1.safetensors")
    second = load_file(tuned.folder / "snapshots" / "epoch_2.safetensors")
    assert first["0.weight"].equal(before["0.weight"]) and not second["0.weight"].equal(first["0.weight"])
    rates = json.loads((tuned.folder / "snapshots" / "epoch_2.json").read_text())["optimizer"]["param_groups"]
    assert [(g["pretrained"], g["lr"]) for g in rates] == [(True, 0.04)]  # every tensor copied: one group, 2 × 0.02

    # Resumed from epoch 1 (still frozen there): its own snapshot, not a second copy, and the same epoch 2.
    Snapshot.objects.filter(job=tuned, epoch=2).delete()
    TrainingJob.objects.filter(pk=tuned.pk).update(status="aborted")
    assert alice_api.post(f"/api/v1/jobs/{tuned.pk}/resume/").status_code == 200
    resumed = wait_job(tuned.pk)
    log = job_log_text(resumed)
    assert log.count("Copied 8 tensors") == 1 and "Resumed from the snapshot at epoch 1" in log
    again = load_file(tuned.folder / "snapshots" / "epoch_2.safetensors")
    assert all(again[name].equal(second[name]) for name in second)
