"""Pretrained models through the API: upload safetensors, refuse what does not fit, make one from a job."""
from __future__ import annotations

import io
import json

import pytest
import torch
from safetensors.torch import save

from jobs.models import Snapshot, TrainingJob
from pretrained.models import PretrainedModel

pytestmark = pytest.mark.django_db


def lenet_weights(shape=(1, 8, 8), classes: int = 3) -> bytes:  # type: ignore[no-untyped-def]
    from networks.builtin import builtin_spec
    from training.torch.build import build_model

    torch.manual_seed(0)
    return save(build_model(builtin_spec("lenet", shape, classes), shape, classes).state_dict())


def post(client, weights: bytes, **fields):  # type: ignore[no-untyped-def]
    file = io.BytesIO(weights)
    file.name = "w.safetensors"
    body = {"name": "LeNet digits", "network": "lenet", "classes": '["a", "b", "c"]', "input_shape": "[1, 8, 8]",
            "weights": file, **fields}
    return client.post("/api/v1/pretrained/", body, format="multipart")


def test_it_uploads_safetensors_and_lists_it(alice_api):
    response = post(alice_api, lenet_weights())

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["summary"]["tensors"] == 8 and body["tensors"]["0.weight"] == [20, 1, 5, 5]
    model = PretrainedModel.objects.get(pk=body["id"])
    assert model.weights_path.read_bytes() == lenet_weights()
    listed = alice_api.get("/api/v1/pretrained/").json()
    assert listed["count"] == 1 and listed["results"][0]["name"] == "LeNet digits"


def test_it_refuses_a_lenet_for_three_channels_with_the_layer_by_layer_report(alice_api):
    response = post(alice_api, lenet_weights(), input_shape="[3, 8, 8]")

    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "weights" in detail
    first = detail["report"]["rows"][0]
    assert first == {"name": "0.weight", "layer": "0", "type": "conv2d", "shape": [20, 3, 5, 5],
                     "source_shape": [20, 1, 5, 5], "action": "remade"}
    assert not PretrainedModel.objects.exists()


@pytest.mark.parametrize(("weights", "fields", "field"), [
    (b"\x80\x04 a pickle, never unpickled", {}, "weights"),
    (None, {"classes": "[1, 2]"}, "classes"),
    (None, {"input_shape": "[2, 8, 8]"}, "input_shape"),
    (None, {"input_shape": "[8, 8]"}, "input_shape"),
    (None, {"network": '{"layers": [{"type": "nope"}]}'}, "network"),
    (None, {"preprocessing": '{"mean": "median"}'}, "preprocessing"),
])
def test_it_refuses_a_bad_upload_naming_the_field(alice_api, weights, fields, field):
    response = post(alice_api, weights if weights is not None else lenet_weights(), **fields)

    assert response.status_code == 400
    assert field in response.json()["detail"], response.json()


def test_it_refuses_a_header_with_a_non_tensor_dtype(alice_api):
    header = json.dumps({"x": {"dtype": "OBJECT", "shape": [1], "data_offsets": [0, 8]}}).encode()
    data = len(header).to_bytes(8, "little") + header + b"\0" * 8

    response = post(alice_api, data)

    assert response.status_code == 400 and "dtype" in response.json()["error"]


def test_it_is_a_404_for_someone_else(alice_api, bob_api):
    pk = post(alice_api, lenet_weights()).json()["id"]

    assert bob_api.get(f"/api/v1/pretrained/{pk}/").status_code == 404
    assert bob_api.delete(f"/api/v1/pretrained/{pk}/").status_code == 404
    assert bob_api.get("/api/v1/pretrained/").json()["count"] == 0
    assert bob_api.get("/api/v1/pretrained/999/").json()["error"]


def test_it_maps_a_torchvision_resnet18_onto_the_builtin(alice_api, settings):
    settings.MAX_UPLOAD_BYTES = 100 * 1024**2  # ResNet-18 is 45 MB
    from tests.pretrained.test_tensor_names import _torchvision_resnet18

    tensors = {name: torch.zeros(shape) for name, shape in _torchvision_resnet18().items()}
    response = post(alice_api, save(tensors), network="resnet18",
                    classes=json.dumps([str(i) for i in range(1000)]), input_shape="[3, 224, 224]")

    assert response.status_code == 201, response.json()
    names = response.json()["tensors"]
    assert "0.weight" in names and "14.weight" in names and "fc.weight" not in names
    from safetensors import safe_open

    with safe_open(PretrainedModel.objects.get().weights_path, framework="pt") as handle:
        assert handle.get_tensor("5.layers.0.weight").shape == (64, 64, 3, 3)


def _finished_job(owner, tmp_weights: bytes) -> TrainingJob:  # type: ignore[no-untyped-def]
    from datasets.models import Dataset

    dataset = Dataset.objects.create(owner=owner, name="d", source="example", source_name="x", image_width=8,
                                     image_height=8, channels=1, resize_mode="squash", val_percent=10,
                                     test_percent=0, seed=0, status="ready", classes=["a", "b", "c"],
                                     split_counts={"train": 9, "val": 1, "test": 0})
    job = TrainingJob.objects.create(owner=owner, dataset=dataset, name="j", network="lenet", network_spec={
        "layers": []}, status="done")
    (job.folder / "snapshots").mkdir(parents=True, exist_ok=True)
    (job.folder / "snapshots" / "epoch_1.safetensors").write_bytes(tmp_weights)
    Snapshot.objects.create(job=job, epoch=1, path="snapshots/epoch_1.safetensors")
    return job


def test_it_makes_a_model_from_a_jobs_snapshot_and_refuses_deleting_it_while_used(alice, alice_api, bob_api):
    job = _finished_job(alice, lenet_weights())

    response = alice_api.post(f"/api/v1/jobs/{job.pk}/pretrained/", {"name": "from job", "epoch": 1}, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["source"] == "job" and body["source_job"] == job.pk and body["classes"] == ["a", "b", "c"]
    assert bob_api.post(f"/api/v1/jobs/{job.pk}/pretrained/", {"name": "x"}, format="json").status_code == 404
    assert alice_api.post(f"/api/v1/jobs/{job.pk}/pretrained/", {"epoch": 7}, format="json").status_code == 400
    TrainingJob.objects.filter(pk=job.pk).update(status="running", pretrained={"model": body["id"]})
    assert alice_api.delete(f"/api/v1/pretrained/{body['id']}/").status_code == 409
    TrainingJob.objects.filter(pk=job.pk).update(status="done")
    assert alice_api.delete(f"/api/v1/pretrained/{body['id']}/").status_code == 204


def test_it_refuses_a_job_that_would_copy_nothing_with_the_report(alice, alice_api):
    pk = post(alice_api, lenet_weights()).json()["id"]
    job = _finished_job(alice, lenet_weights())

    response = alice_api.post("/api/v1/jobs/", {"dataset": job.dataset_id, "network": "resnet18",
                                                "pretrained": {"model": pk}}, format="json")

    assert response.status_code == 400
    report = response.json()["detail"]["report"]
    assert report["counts"]["copied"] == 0 and report["counts"]["unused"] == 7  # 0.weight: another shape


def test_it_refuses_freezing_without_pretrained_weights_and_a_multiplier_out_of_bounds(alice, alice_api):
    job = _finished_job(alice, lenet_weights())
    base = {"dataset": job.dataset_id, "network": "lenet"}

    assert "pretrained" in alice_api.post("/api/v1/jobs/", {**base, "freeze_epochs": 2},
                                          format="json").json()["detail"]
    response = alice_api.post("/api/v1/jobs/", {**base, "pretrained": {"job": job.pk}, "pretrained_lr_mult": 11},
                              format="json")
    assert "pretrained_lr_mult" in response.json()["detail"]


def test_it_clones_a_fine_tune_with_its_source_and_echoes_it(alice, alice_api):
    job = _finished_job(alice, lenet_weights())
    created = alice_api.post("/api/v1/jobs/", {"dataset": job.dataset_id, "network": "lenet", "freeze_epochs": 3,
                                               "pretrained": {"job": job.pk}}, format="json").json()
    assert created["pretrained"]["job"] == job.pk and created["pretrained"]["epoch"] == 1.0
    TrainingJob.objects.filter(pk=created["id"]).update(status="done")

    clone = alice_api.post(f"/api/v1/jobs/{created['id']}/clone/").json()

    assert clone["pretrained"]["job"] == job.pk and clone["freeze_epochs"] == 3
    detail = alice_api.get(f"/api/v1/jobs/{clone['id']}/").json()
    assert detail["pretrained_report"]["counts"]["copied"] == 8
