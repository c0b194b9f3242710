"""POST jobs/ takes augmentation and the solver extras, refuses bad ones naming the key, and echoes them;
a real worker trains a LeNet job with every augmentation on."""
from __future__ import annotations

import random

import pytest

from datasets.models import Dataset
from jobs.models import TrainingJob
from tests.conftest import Worker, wait_for
from tests.jobs.test_recovery import SETTINGS, curve, final_weights, log_text, reached, ready_digits
from tests.jobs.test_training_flow import start, wait_job
from training.torch.backend import TorchBackend


def a_dataset(owner, channels: int) -> Dataset:  # type: ignore[no-untyped-def]
    return Dataset.objects.create(owner=owner, name=f"{channels}-channel", source="example", source_name="x",
                                  image_width=28, image_height=28, channels=channels, resize_mode="squash",
                                  val_percent=20, test_percent=0, seed=0, status="ready",
                                  classes=[str(i) for i in range(10)])


GRAYSCALE_ALL = {"flip": "horizontal", "rot90": True, "rotate_degrees": 15, "translate": 0.1, "scale": [0.9, 1.1],
                 "crop_padding": 2, "noise_std": 0.02, "mean": "pixel"}


@pytest.mark.django_db
@pytest.mark.parametrize("augmentation,key", [
    ({"shear": 0.1}, "augmentation.shear"),
    ({"rotate_degrees": 200}, "augmentation.rotate_degrees"),
    ({"scale": [1.5, 0.5]}, "augmentation.scale"),
    ({"hsv": {"hue": 0.1}}, "augmentation.hsv"),
    ("flip", "augmentation"),
])
def test_it_refuses_a_bad_augmentation_with_a_400_naming_the_key(alice, alice_api, augmentation, key):
    dataset = a_dataset(alice, channels=1)

    response = alice_api.post("/api/v1/jobs/", {"dataset": dataset.pk, "network": "lenet",
                                                "augmentation": augmentation}, format="json")

    assert response.status_code == 400
    assert response.json()["error"].startswith(f"{key}:")
    assert "augmentation" in response.json()["detail"]
    assert not TrainingJob.objects.exists()


@pytest.mark.django_db
def test_it_says_colour_shifts_need_a_colour_dataset(alice, alice_api):
    dataset = a_dataset(alice, channels=1)

    response = alice_api.post("/api/v1/jobs/", {"dataset": dataset.pk, "network": "lenet",
                                                "augmentation": {"hsv": {"saturation": 0.2}}}, format="json")

    assert "hsv shifts need a colour dataset; this one is grayscale (1 channel)" in response.json()["error"]


@pytest.mark.django_db
@pytest.mark.parametrize("field,value", [("accumulate", 0), ("grad_clip", -1), ("label_smoothing", 0.6)])
def test_it_refuses_solver_extras_out_of_range_naming_the_field(alice, alice_api, field, value):
    dataset = a_dataset(alice, channels=1)

    response = alice_api.post("/api/v1/jobs/", {"dataset": dataset.pk, "network": "lenet", field: value},
                              format="json")

    assert response.status_code == 400
    assert field in response.json()["detail"]


@pytest.mark.django_db
def test_it_stores_the_given_keys_normalised_and_clones_them(alice, alice_api):
    dataset = a_dataset(alice, channels=3)
    body = {"dataset": dataset.pk, "network": "lenet", "accumulate": 4, "grad_clip": 1.5, "label_smoothing": 0.1,
            "augmentation": {"flip": "Both", "scale": [0.8, 1], "hsv": {"hue": 0.05}}}

    created = alice_api.post("/api/v1/jobs/", body, format="json").json()
    clone = alice_api.post(f"/api/v1/jobs/{created['id']}/clone/").json()

    for job in (created, clone):
        assert job["augmentation"] == {"flip": "both", "scale": [0.8, 1.0],
                                       "hsv": {"hue": 0.05, "saturation": 0.0, "value": 0.0}}
        assert (job["accumulate"], job["grad_clip"], job["label_smoothing"]) == (4, 1.5, 0.1)


@pytest.mark.django_db
def test_a_job_without_them_keeps_todays_training(alice, alice_api):
    dataset = a_dataset(alice, channels=1)

    job = alice_api.post("/api/v1/jobs/", {"dataset": dataset.pk, "network": "lenet"}, format="json").json()

    assert (job["augmentation"], job["accumulate"], job["grad_clip"], job["label_smoothing"]) == ({}, 1, 0.0, 0.0)


@pytest.mark.django_db(transaction=True)
def test_a_lenet_job_on_the_digits_with_every_augmentation_trains_to_done(celery_worker, alice_api):
    dataset = ready_digits(alice_api)

    created = start(alice_api, dataset, network="lenet", epochs=2, batch_size=32, learning_rate=0.03,
                    augmentation=GRAYSCALE_ALL, accumulate=2, grad_clip=5.0, label_smoothing=0.1)
    job = wait_job(created["id"])

    assert job.status == "done", job.error
    body = alice_api.get(f"/api/v1/jobs/{job.pk}/").json()
    assert body["augmentation"] == {**GRAYSCALE_ALL, "rotate_degrees": 15.0, "scale": [0.9, 1.1]}
    assert (body["accumulate"], body["grad_clip"], body["label_smoothing"]) == (2, 5.0, 0.1)
    assert body["latest"]["val_accuracy"] > 0.2, "above chance (0.1), though flips and quarter turns blur 6 and 9"


@pytest.mark.django_db(transaction=True)
def test_an_augmented_job_killed_at_a_random_step_resumes_as_if_never_killed(restartable_worker: Worker,
                                                                              alice_api):
    """test_recovery's faithful resume, with augmentation and accumulation on."""
    dataset = ready_digits(alice_api)
    fields = {**SETTINGS, "epochs": 2, "augmentation": GRAYSCALE_ALL, "accumulate": 3, "snapshot_interval": 0.3}
    reference = wait_job(start(alice_api, dataset, **fields)["id"])
    assert reference.status == "done", reference.error
    total = reference.metrics.filter(split="train", name="loss").order_by("-step")[0].step
    kill_at = random.Random().randint(total // 3, total * 2 // 3)  # past the first snapshot (0.3)

    pk = start(alice_api, dataset, **fields)["id"]
    wait_for(lambda: reached(pk, kill_at), 120, f"job {pk} to reach step {kill_at}")
    restartable_worker.kill()
    restartable_worker.start()
    job = wait_job(pk)

    message = f"killed at step {kill_at} of {total}"
    assert job.status == "done" and job.attempt == 2, (message, job.error)
    assert "Resumed from the snapshot" in log_text(job), message
    want, got = final_weights(reference), final_weights(job)
    assert max(float((want[k] - got[k]).abs().max()) for k in want) <= 1e-6, message
    want_curve, got_curve = curve(reference.pk), curve(pk)
    assert got_curve.keys() == want_curve.keys(), message
    assert max(abs(got_curve[k] - want_curve[k]) for k in want_curve) <= 1e-5, message


def test_the_torch_backend_says_it_augments_without_importing_torch():
    from training.backends import backends

    assert backends.backend_class("torch").supports_augmentation


class PlainBackend(TorchBackend):
    supports_augmentation = False


@pytest.mark.django_db
def test_a_backend_that_cannot_augment_is_refused_an_augmented_job(alice, alice_api, settings):
    settings.TRAINING_BACKENDS = {**settings.TRAINING_BACKENDS,
                                  "plain": {"BACKEND": "tests.jobs.test_augmentation_api.PlainBackend"}}
    dataset = a_dataset(alice, channels=1)
    body = {"dataset": dataset.pk, "network": "lenet", "backend": "plain"}

    flipped = alice_api.post("/api/v1/jobs/", {**body, "augmentation": {"flip": "vertical"}}, format="json")
    no_mean = alice_api.post("/api/v1/jobs/", {**body, "augmentation": {"mean": "none"}}, format="json")
    plain = alice_api.post("/api/v1/jobs/", {**body, "augmentation": {"mean": "image", "flip": "none"}}, format="json")

    for refused in (flipped, no_mean):
        assert refused.status_code == 400 and "The plain backend cannot augment" in refused.json()["error"]
    assert plain.status_code == 201


class FlipOnlyBackend(TorchBackend):
    augmentation_keys = ("flip",)


@pytest.mark.django_db
def test_a_backend_that_applies_some_keys_is_refused_the_others_naming_the_key(alice, alice_api, settings):
    settings.TRAINING_BACKENDS = {**settings.TRAINING_BACKENDS,
                                  "fliponly": {"BACKEND": "tests.jobs.test_augmentation_api.FlipOnlyBackend"}}
    dataset = a_dataset(alice, channels=1)
    body = {"dataset": dataset.pk, "network": "lenet", "backend": "fliponly"}

    rotated = alice_api.post("/api/v1/jobs/", {**body, "augmentation": {"flip": "both", "rotate_degrees": 10}},
                             format="json")
    flipped = alice_api.post("/api/v1/jobs/", {**body, "augmentation": {"flip": "both", "rotate_degrees": 0,
                                                                        "mean": "none"}}, format="json")

    assert rotated.status_code == 400 and list(rotated.json()["detail"]) == ["augmentation"]
    assert "augmentation.rotate_degrees: the fliponly backend does not apply it (it applies flip)" in rotated.json()["error"]
    assert flipped.status_code == 201, flipped.json()
