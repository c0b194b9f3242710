"""Bad job input is refused before anything is queued; other users' jobs do not exist for you."""
from __future__ import annotations

import pytest

from datasets.models import Dataset
from jobs.models import TrainingJob
from networks.models import Network

pytestmark = pytest.mark.django_db


@pytest.fixture
def ready_dataset(alice):  # type: ignore[no-untyped-def]
    return Dataset.objects.create(owner=alice, name="digits", source="example", source_name="x", image_width=28,
                                  image_height=28, channels=1, resize_mode="squash", val_percent=20,
                                  test_percent=0, seed=0, status="ready", classes=[str(i) for i in range(10)])


BAD_SPEC = {"layers": [{"type": "conv2d", "out_channels": 8, "kernel_size": 3}, {"type": "linear", "out_features": 10}]}


def test_it_rejects_an_invalid_custom_network_naming_the_layer(alice_api):
    response = alice_api.post("/api/v1/networks/", {"name": "broken", "spec": {"layers": [
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3}, {"type": "teleport"}]}}, format="json")

    assert response.status_code == 400
    assert "Layer 1" in response.json()["error"] and "teleport" in response.json()["error"]
    assert not Network.objects.exists()


def test_it_rejects_a_job_whose_network_does_not_fit_the_dataset(alice_api, ready_dataset):
    alice_api.post("/api/v1/networks/", {"name": "noflatten", "spec": BAD_SPEC}, format="json")

    response = alice_api.post("/api/v1/jobs/", {"dataset": ready_dataset.pk, "network": "noflatten"}, format="json")

    assert response.status_code == 400
    assert "Layer 1 (linear)" in response.json()["error"]
    assert response.json()["detail"]["network"]
    assert not TrainingJob.objects.exists()


def test_it_shows_a_spec_error_on_the_network_form(client, alice):
    client.force_login(alice)

    response = client.post("/networks/new/", {"name": "x", "spec": '{"layers": [{"type": "conv2d"}]}'})

    assert response.status_code == 400
    assert "Layer 0 (conv2d)" in response.content.decode()


def test_it_shows_a_network_summary_with_shapes_and_parameters(client, alice, ready_dataset):
    client.force_login(alice)

    page = client.get(f"/networks/lenet/?dataset={ready_dataset.pk}").content.decode()

    assert "Total parameters" in page and "431080" in page
    body = client.get("/api/v1/networks/lenet/").json()
    assert body["total_params"] == 431080 and body["layers"][0]["output_shape"] == [20, 24, 24]


@pytest.mark.parametrize("field,value,message", [
    ("optimizer", "adagrad", "optimizer"), ("lr_policy", "poly", "lr_policy"), ("device", "tpu:0", "device"),
    ("epochs", 0, "epochs"), ("batch_size", -1, "batch_size"), ("learning_rate", -0.1, "learning_rate"),
    ("network", "vgg16", "network"), ("dataset", 99999, "dataset"), ("backend", "tensorflow", "backend"),
])
def test_it_rejects_bad_job_fields_with_the_field_named(alice_api, ready_dataset, field, value, message):
    body = {"dataset": ready_dataset.pk, "network": "lenet", field: value}

    response = alice_api.post("/api/v1/jobs/", body, format="json")

    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert not TrainingJob.objects.exists()


def test_it_refuses_a_dataset_that_is_not_ready(alice_api, ready_dataset):
    Dataset.objects.filter(pk=ready_dataset.pk).update(status="running")

    response = alice_api.post("/api/v1/jobs/", {"dataset": ready_dataset.pk, "network": "lenet"}, format="json")

    assert response.status_code == 400 and "not ready" in response.json()["error"]


def test_it_hides_other_users_jobs_and_networks(alice, bob, bob_api, alice_api, ready_dataset, client):
    job = TrainingJob.objects.create(owner=alice, dataset=ready_dataset, name="secret", network="lenet",
                                     network_spec={}, status="done")
    network = Network.objects.create(owner=alice, name="mine", spec={"layers": [{"type": "flatten"}]})

    for method, path in [("get", f"/api/v1/jobs/{job.pk}/"), ("delete", f"/api/v1/jobs/{job.pk}/"),
                         ("post", f"/api/v1/jobs/{job.pk}/abort/"), ("post", f"/api/v1/jobs/{job.pk}/clone/"),
                         ("get", f"/api/v1/jobs/{job.pk}/metrics/"), ("post", f"/api/v1/jobs/{job.pk}/classify/"),
                         ("get", f"/api/v1/networks/{network.pk}/")]:
        assert getattr(bob_api, method)(path).status_code == 404, path
    assert bob_api.get("/api/v1/jobs/").json()["results"] == []
    assert "mine" not in [n["name"] for n in bob_api.get("/api/v1/networks/").json()["results"]]
    client.force_login(bob)
    assert client.get(f"/jobs/{job.pk}/").status_code == 404
    assert TrainingJob.objects.filter(pk=job.pk).exists()
    # and bob cannot train on alice's dataset either
    assert bob_api.post("/api/v1/jobs/", {"dataset": ready_dataset.pk, "network": "lenet"},
                        format="json").status_code == 400


def test_it_refuses_to_classify_without_a_snapshot(alice_api, ready_dataset, alice):
    import io

    from tests.conftest import make_image

    job = TrainingJob.objects.create(owner=alice, dataset=ready_dataset, name="new", network="lenet",
                                     network_spec={}, status="queued")
    image = io.BytesIO(make_image((1, 2, 3)))
    image.name = "x.png"

    response = alice_api.post(f"/api/v1/jobs/{job.pk}/classify/", {"image": image}, format="multipart")

    assert response.status_code == 409 and "no snapshot" in response.json()["error"]


def test_it_lists_builtin_networks(alice_api):
    names = {n["name"]: n["builtin"] for n in alice_api.get("/api/v1/networks/").json()["results"]}

    assert names == {"lenet": True, "mlp": True, "alexnet": True, "resnet18": True, "unet": True,
                     "fcn_resnet18": True, "centernet": True}
