"""Inspect a snapshot layer by layer, and compress it (prune, int8 quantization) so it still classifies."""
from __future__ import annotations

import io
import json
import zipfile

import pytest
from safetensors.numpy import load_file

from networks.spec import summarize
from results.models import Compression
from tests.conftest import COLORS, make_image, wait_for
from tests.jobs.test_training_flow import ready_colours, start, wait_job
from tests.results.test_export import fresh_python


def image_file(colour: str = "red", name: str = "probe.png") -> io.BytesIO:
    upload = io.BytesIO(make_image(COLORS[colour], noise_seed=99))
    upload.name = name
    return upload


def trained(api, network: str):  # type: ignore[no-untyped-def]
    dataset = ready_colours(api, per_class=24)
    job = wait_job(start(api, dataset, network=network, epochs=3)["id"])
    assert job.status == "done", job.error
    return job


@pytest.mark.django_db(transaction=True)
def test_it_inspects_every_layer_of_the_network(celery_worker, alice_api, client, alice):
    job = trained(alice_api, "lenet")

    response = alice_api.post(f"/api/v1/jobs/{job.pk}/inspect/", {"image": image_file("red")}, format="multipart")

    assert response.status_code == 200, response.json()
    body = response.json()
    rows = summarize(job.network_spec, tuple(job.dataset.image_shape), len(job.dataset.classes)).rows
    assert [layer["path"] for layer in body["layers"]] == [row.path for row in rows]
    assert [tuple(layer["output_shape"]) for layer in body["layers"]] == [row.output_shape for row in rows]
    assert body["predictions"][0]["label"] == "red"
    weights = load_file(job.folder / job.snapshots.order_by("-epoch").first().path)
    conv = body["layers"][0]
    assert conv["type"] == "Conv2d" and conv["maps_png"].startswith("data:image/png;base64,")
    stats = conv["params"]["weight"]
    assert stats["mean"] == pytest.approx(float(weights["0.weight"].mean()), abs=1e-6)
    assert stats["std"] == pytest.approx(float(weights["0.weight"].std()), rel=1e-5)
    assert stats["count"] == weights["0.weight"].size == sum(stats["histogram"]["counts"])
    assert len(stats["histogram"]["edges"]) == 31
    assert "values" in body["layers"][-1] and len(body["layers"][-1]["values"]) == 3
    assert not any(layer["params"] for layer in body["layers"] if layer["type"] in ("ReLU", "MaxPool2d"))

    not_image = io.BytesIO(b"this is text, not a picture")
    not_image.name = "notes.png"
    refused = alice_api.post(f"/api/v1/jobs/{job.pk}/inspect/", {"image": not_image}, format="multipart")
    assert refused.status_code == 400 and "not a usable image" in refused.json()["error"]
    assert "image" in refused.json()["detail"]

    client.force_login(alice)
    page = client.post(f"/jobs/{job.pk}/inspect/", {"image": image_file("red")}).content.decode()
    assert page.count('class="card layer-card"') == len(rows) and "js/inspect.js" in page


def compress(api, job, method: str, **params):  # type: ignore[no-untyped-def]
    response = api.post(f"/api/v1/jobs/{job.pk}/compress/", {"method": method, "params": params}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def finished(pk: int) -> Compression:
    compression = wait_for(lambda: (c := Compression.objects.get(pk=pk)).is_finished and c, 120, "the compression")
    assert compression.status == "done", compression.error  # type: ignore[union-attr]
    return compression  # type: ignore[return-value]


def classify(api, compression: Compression, colour: str) -> list[dict]:  # type: ignore[type-arg]
    url = f"/api/v1/jobs/{compression.job_id}/compressions/{compression.pk}/classify/"
    response = api.post(url, {"image": image_file(colour)}, format="multipart")
    assert response.status_code == 200, response.json()
    return response.json()["predictions"]


def assert_download_predicts_like_the_api(api, compression: Compression, folder) -> None:  # type: ignore[no-untyped-def]
    """The compressed model's download classifies in a fresh process, with only torch and safetensors,
    as the workbench classifies with the same compressed model."""
    detail = api.get(f"/api/v1/jobs/{compression.job_id}/compressions/{compression.pk}/").json()
    download = api.get(detail["download_url"])
    assert download.status_code == 200, detail
    assert download["Content-Disposition"].endswith(f'-{compression.method.replace("_", "-")}.zip"')
    weights = "weights.safetensors" if compression.method == "prune" else "model.pt"
    with zipfile.ZipFile(io.BytesIO(b"".join(download))) as archive:
        assert set(archive.namelist()) == {weights, "model.json", "mean.safetensors", "README.md", "predict.py"}
        archive.extractall(folder)
    meta = json.loads((folder / "model.json").read_text())
    assert meta["compression"]["method"] == compression.method and meta["epoch"] == compression.snapshot.epoch
    assert compression.method in (folder / "README.md").read_text()
    for colour in ("red", "green", "blue"):
        (folder / f"{colour}.png").write_bytes(make_image(COLORS[colour], noise_seed=99))

    ran = fresh_python(["predict.py", "--json", "red.png", "green.png", "blue.png"], folder)

    assert ran.returncode == 0, ran.stderr
    assert "UserWarning" not in ran.stderr, ran.stderr
    for colour, item in zip(("red", "green", "blue"), json.loads(ran.stdout)):
        expected = classify(api, compression, colour)
        assert [p["label"] for p in item["predictions"]] == [p["label"] for p in expected], colour
        assert [p["probability"] for p in item["predictions"]] == pytest.approx(
            [p["probability"] for p in expected], abs=1e-4)


@pytest.mark.django_db(transaction=True)
def test_it_compresses_and_the_compressed_models_still_classify(celery_worker, alice_api, client, alice, bob_api,
                                                                 tmp_path):
    import torch

    job = trained(alice_api, "lenet")
    ids = {m: compress(alice_api, job, m, **({"amount": 0.5} if m == "prune" else {}))
           for m in ("prune", "quantize_dynamic", "quantize_static")}
    done = {m: finished(pk) for m, pk in ids.items()}

    pruned = done["prune"]
    weights = load_file(job.folder / pruned.path)
    for name in ("0.weight", "2.weight", "5.weight", "7.weight"):  # the conv and linear layers
        assert (weights[name] == 0).mean() > 0  # global pruning: uneven per layer, 50% over all of them
    total = sum(weights[n].size for n in ("0.weight", "2.weight", "5.weight", "7.weight"))
    zeros = sum(int((weights[n] == 0).sum()) for n in ("0.weight", "2.weight", "5.weight", "7.weight"))
    assert zeros / total >= 0.5 and pruned.result["sparsity"] >= 0.5
    assert set(pruned.result["layer_sparsity"]) == {"0", "2", "5", "7"}
    assert pruned.result["size_after"] < pruned.result["size_before"]

    for method, compression in done.items():
        result = compression.result
        assert result["method"] == method
        assert result["val_accuracy_before"] >= 0.9 and result["val_accuracy_after"] >= 0.9, result
        assert result["ratio"] == pytest.approx(result["size_before"] / result["size_after"])
        assert classify(alice_api, compression, "red")[0]["label"] == "red", method
        assert classify(alice_api, compression, "blue")[0]["label"] == "blue", method
        if method != "prune":
            assert compression.path.endswith(".pt")
            scripted = torch.jit.load(str(job.folder / compression.path))
            assert scripted(torch.zeros(1, 3, 8, 8)).shape == (1, 3)
            assert result["file_size_after"] < result["file_size_before"]

    detail = alice_api.get(f"/api/v1/jobs/{job.pk}/compressions/{ids['quantize_static']}/").json()
    assert detail["status"] == "done" and detail["result"]["ratio"] > 2
    for method in ("prune", "quantize_static"):
        assert_download_predicts_like_the_api(alice_api, done[method], tmp_path / method)
    assert bob_api.get(f"/api/v1/jobs/{job.pk}/compressions/{ids['prune']}/download/").status_code == 404
    client.force_login(alice)
    page = client.get(f"/jobs/{job.pk}/compressions/{ids['prune']}/").content.decode()
    assert "Validation accuracy" in page and "Classify with the compressed model" in page
    assert f'href="/jobs/{job.pk}/compressions/{ids["prune"]}/download/"' in page
    assert "Compress" in client.get(f"/jobs/{job.pk}/").content.decode()


@pytest.mark.django_db
def test_it_refuses_jobs_not_done_and_bad_compression_input(alice_api, running_job):
    from jobs.models import TrainingJob

    job = running_job

    inspect = alice_api.post(f"/api/v1/jobs/{job.pk}/inspect/", {"image": image_file()}, format="multipart")
    assert inspect.status_code == 409 and "once it is done" in inspect.json()["error"]
    early = alice_api.post(f"/api/v1/jobs/{job.pk}/compress/", {"method": "prune"}, format="json")
    assert early.status_code == 409 and "once it is done" in early.json()["error"]

    TrainingJob.objects.filter(pk=job.pk).update(status="done")
    bad = {"method": "zip"}, {"method": "prune", "params": {"amount": 1.5}}, \
        {"method": "prune", "params": {"amount": "lots"}}, {"method": "prune", "params": {"epochs": 2.5}}, \
        {"method": "quantize_static", "params": {"amount": 0.5}}
    for body, field in zip(bad, ("method", "amount", "amount", "epochs", "amount")):
        response = alice_api.post(f"/api/v1/jobs/{job.pk}/compress/", body, format="json")
        assert response.status_code == 400, body
        assert field in response.json()["detail"] and field in response.json()["error"], response.json()
    assert not Compression.objects.exists()
