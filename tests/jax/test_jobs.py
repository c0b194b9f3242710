"""The jax backend through the product: GET backends/, POST jobs/ (and its refusals), a real job on the
session's Celery worker, abort, classify, evaluate and the archive with its own predict.py."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from jobs.models import TrainingJob
from results.models import Evaluation, Export
from tests.conftest import make_image, wait_for
from tests.jobs.test_recovery import ready_digits
from tests.jobs.test_training_flow import wait_job

pytestmark = pytest.mark.django_db(transaction=True)

LENET = {"network": "lenet", "epochs": 5, "batch_size": 16, "optimizer": "adam", "learning_rate": 0.002, "seed": 5,
         "backend": "jax"}


def create(client, dataset, **fields):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/jobs/", {"dataset": dataset.pk, **LENET, **fields}, format="json")


def test_it_lists_the_jax_backend_with_its_version_tasks_and_capabilities(alice_api):
    from importlib import metadata

    listed = {entry["alias"]: entry for entry in alice_api.get("/api/v1/backends/").json()["results"]}
    jax = listed["jax"]
    assert jax["framework"] == "JAX" and jax["version"] == metadata.version("jax") == "0.10.2"
    assert jax["tasks"] == ["classification"]
    capabilities = jax["capabilities"]
    assert capabilities["resume"] and capabilities["export_formats"] == ["archive"]
    assert not capabilities["inspect"] and capabilities["compress_methods"] == [] and capabilities["amp_modes"] == ["off"]
    assert not capabilities["distributed"] and not capabilities["compile"]
    assert capabilities["augmentation_keys"] == ["flip", "rot90", "rotate_degrees", "translate", "scale",
                                                 "crop_padding", "noise_std", "hsv"]
    assert "upsample" not in capabilities["layer_types"] and "residual" in capabilities["layer_types"]
    assert "upsample" in listed["torch"]["capabilities"]["layer_types"]


@pytest.mark.parametrize(("fields", "field", "says"), [
    ({"amp": "bf16"}, "amp", "The jax backend offers mixed precision off."),
    ({"devices": ["cpu", "cpu"]}, "devices", "The jax backend trains a job on one device."),
    ({"compile": True}, "compile", "The jax backend cannot compile networks."),
])
def test_it_refuses_what_the_jax_backend_does_not_do_naming_the_field(celery_worker, alice_api, fields, field, says):
    dataset = ready_digits(alice_api)
    response = create(alice_api, dataset, **fields)
    assert response.status_code == 400, response.json()
    assert list(response.json()["detail"]) == [field] and says in response.json()["error"]
    assert not TrainingJob.objects.exists()


def test_it_refuses_a_network_with_a_layer_jax_cannot_build_naming_the_layer(celery_worker, alice_api):
    dataset = ready_digits(alice_api)
    spec = {"layers": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
                       {"type": "upsample", "scale_factor": 2}, {"type": "flatten"},
                       {"type": "linear", "out_features": "num_classes"}]}
    network = alice_api.post("/api/v1/networks/", {"name": "up", "spec": spec}, format="json")
    assert network.status_code == 201, network.json()
    response = create(alice_api, dataset, network="up")
    assert response.status_code == 400 and list(response.json()["detail"]) == ["network"]
    assert "The jax backend cannot build layer 1 (upsample)" in response.json()["error"]
    assert create(alice_api, dataset, network="up", backend="torch").status_code == 201  # torch builds it


def test_a_lenet_job_on_the_digits_trains_classifies_evaluates_and_exports(celery_worker, alice_api, tmp_path,
                                                                           settings):
    # The serving worker's first jax request imports jax and compiles the model: on a loaded CI machine
    # that took longer than the default 10 s once. Later requests are the warm ones the timeout is for.
    settings.WORKBENCH_SERVING_TIMEOUT = 60
    dataset = ready_digits(alice_api)
    created = create(alice_api, dataset)
    assert created.status_code == 201, created.json()
    job = wait_job(created.json()["id"])
    assert job.status == "done", job.error
    assert job.backend == "jax" and job.progress == 1.0
    assert job.latest["val_accuracy"] >= 0.93
    assert job.metrics.filter(split="train", name="lr").exists() and job.metrics.filter(split="val", name="loss").exists()
    assert sorted(job.snapshots.values_list("epoch", flat=True)) == [1.0, 2.0, 3.0, 4.0, 5.0]

    image = io.BytesIO(make_image((255, 255, 255), size=(8, 8)))
    image.name = "white.png"
    classified = alice_api.post(f"/api/v1/jobs/{job.pk}/classify/", {"image": image}, format="multipart")
    assert classified.status_code == 200, classified.json()
    assert sum(p["probability"] for p in classified.json()["predictions"]) == pytest.approx(1.0, abs=1e-3)

    evaluation = alice_api.post(f"/api/v1/jobs/{job.pk}/evaluate/", {"split": "val"}, format="json")
    assert evaluation.status_code == 201, evaluation.json()
    done = wait_for(lambda: (e := Evaluation.objects.get(pk=evaluation.json()["id"])).is_finished and e, 120, "evaluation")
    assert done.status == "done", done.error
    assert done.result["top1"] == pytest.approx(job.latest["val_accuracy"], abs=1e-6)
    assert len(done.result["confusion"]) == 10

    assert alice_api.post(f"/api/v1/jobs/{job.pk}/export/", {"format": "onnx"}, format="json").status_code == 400
    exported = alice_api.post(f"/api/v1/jobs/{job.pk}/export/", {"format": "archive"}, format="json")
    assert exported.status_code == 201, exported.json()
    export = wait_for(lambda: (e := Export.objects.get(pk=exported.json()["id"])).is_finished and e, 120, "export")
    assert export.status == "done", export.error
    payload = b"".join(alice_api.get(f"/api/v1/jobs/{job.pk}/exports/{export.pk}/download/"))
    zipfile.ZipFile(io.BytesIO(payload)).extractall(tmp_path)
    (tmp_path / "white.png").write_bytes(make_image((255, 255, 255), size=(8, 8)))
    # predict.py runs where torch cannot be imported: it needs only jax, safetensors, Pillow and numpy.
    code = ("import sys; sys.modules['torch'] = None; sys.modules['flax'] = None; sys.argv = ['predict.py', "
            "'white.png', '--json']; import runpy; runpy.run_path('predict.py', run_name='__main__')")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    predicted = json.loads(run.stdout)[0]["predictions"]
    assert [p["label"] for p in predicted] == [p["label"] for p in classified.json()["predictions"]]


def test_a_jax_job_stops_within_seconds_when_aborted(celery_worker, alice_api):
    dataset = ready_digits(alice_api)
    pk = create(alice_api, dataset, epochs=200, network="mlp")
    assert pk.status_code == 201, pk.json()
    pk = pk.json()["id"]
    wait_for(lambda: TrainingJob.objects.get(pk=pk).metrics.filter(split="train").exists(), 120, "training to start")
    assert alice_api.post(f"/api/v1/jobs/{pk}/abort/").status_code in (200, 202)
    job = wait_job(pk, timeout=30)
    assert job.status == "aborted", job.error
    assert job.progress < 0.5


def test_the_web_process_imports_neither_torch_nor_jax(alice_api):
    code = ("import django, os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'tests.settings'); "
            "django.setup(); import workbench.urls, workbench.asgi, jobs.api, jobs.views, jobs.forms, jobs.services, "
            "results.api, results.views, results.export_api, results.evaluation, training.api, networks.api, "
            "training.jax.backend; "
            "from training.backends import backend_list, backends; entries = backend_list(); "
            "assert backends.backend_class('jax').export_formats == ('archive',); "
            "from django.test import Client; from django.contrib.auth.models import User; "
            "bad = [m for m in ('torch', 'jax', 'jaxlib', 'flax', 'optax') if m in sys.modules]; "
            "assert not bad, f'imported {bad}'; print([e.alias for e in entries])")
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "'jax'" in result.stdout
