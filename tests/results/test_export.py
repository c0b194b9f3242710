"""Export: the archive predicts in a fresh process like the API; TorchScript and ONNX match torch."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest

from results.models import Export
from tests.conftest import make_image, wait_for
from tests.jobs.test_training_flow import ready_colours, start, wait_job
from training.torch import archive_predict


def export(client, job, fmt: str, **fields):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1/jobs/{job.pk}/export/", {"format": fmt, **fields}, format="json")


def wait_export(pk: int) -> Export:
    found = wait_for(lambda: (e := Export.objects.get(pk=pk)).is_finished and e, 120, "the export")
    assert found.status == "done", found.error  # type: ignore[union-attr]
    return found  # type: ignore[return-value]


def fresh_python(args: list[str], cwd) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    """The venv's interpreter in isolated mode (-I: no PYTHONPATH, no script folder on sys.path), outside the repo."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-I", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.django_db(transaction=True)
def test_it_exports_an_archive_that_predicts_in_a_fresh_process_like_the_api(celery_worker, alice_api, client,
                                                                            alice, bob_api, tmp_path):
    dataset = ready_colours(alice_api)
    job = wait_job(start(alice_api, dataset, epochs=2)["id"])

    response = export(alice_api, job, "archive")

    assert response.status_code == 201, response.json()
    done = wait_export(response.json()["id"])
    again = export(alice_api, job, "archive")
    assert again.status_code == 200 and again.json()["id"] == done.pk and again.json()["status"] == "done"
    assert again.json()["size_bytes"] == done.size_bytes == (job.folder / done.path).stat().st_size
    client.force_login(alice)
    download = client.get(f"/jobs/{job.pk}/exports/{done.pk}/download/")
    assert download.status_code == 200 and "attachment" in download["Content-Disposition"]
    payload = b"".join(download)
    assert payload == b"".join(alice_api.get(again.json()["download_url"]))
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        assert set(archive.namelist()) == {"weights.safetensors", "model.json", "mean.safetensors", "README.md",
                                           "predict.py"}
        archive.extractall(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["classes"] == ["blue", "green", "red"] and meta["input_shape"] == [3, 8, 8]
    assert "subtract the mean image" in (tmp_path / "README.md").read_text().lower()
    assert "import jobs" not in (tmp_path / "predict.py").read_text()
    image = make_image((30, 200, 40), size=(30, 30), noise_seed=99)
    (tmp_path / "image.png").write_bytes(image)

    ran = fresh_python(["predict.py", "--json", "image.png"], tmp_path)

    assert ran.returncode == 0, ran.stderr
    assert "UserWarning" not in ran.stderr, ran.stderr
    predicted = json.loads(ran.stdout)[0]["predictions"]
    upload = io.BytesIO(image)
    upload.name = "image.png"
    expected = alice_api.post(f"/api/v1/jobs/{job.pk}/classify/", {"image": upload}, format="multipart").json()
    assert [p["label"] for p in predicted] == [p["label"] for p in expected["predictions"]]
    assert [p["probability"] for p in predicted] == pytest.approx(
        [p["probability"] for p in expected["predictions"]], abs=1e-4)
    # The same interpreter, run the same way, cannot even find the workbench: predict.py stands alone.
    isolated = fresh_python(["-c", "import importlib.util; print(importlib.util.find_spec('jobs'))"], tmp_path)
    assert isolated.stdout.strip() == "None"
    assert bob_api.get(f"/api/v1/jobs/{job.pk}/exports/{done.pk}/").status_code == 404
    assert bob_api.get(f"/api/v1/jobs/{job.pk}/exports/{done.pk}/download/").status_code == 404
    weights = client.get(f"/jobs/{job.pk}/snapshots/2.0/download/")
    assert b"".join(weights) == (tmp_path / "weights.safetensors").read_bytes()


@pytest.mark.django_db(transaction=True)
def test_it_exports_torchscript_and_onnx_that_match_torch(celery_worker, alice_api, client, alice):
    import onnxruntime
    import torch

    from training.torch.models import load_snapshot

    dataset = ready_colours(alice_api)
    job = wait_job(start(alice_api, dataset, network="lenet", epochs=1)["id"])

    started = {fmt: export(alice_api, job, fmt) for fmt in ("torchscript", "onnx")}

    assert {r.status_code for r in started.values()} == {201}
    scripted, onnx = (wait_export(started[fmt].json()["id"]) for fmt in ("torchscript", "onnx"))
    assert onnx.result["max_abs_diff"] < 1e-4 and onnx.result["checked_inputs"] == 8
    assert scripted.result["max_abs_diff"] < 1e-4
    model, mean = load_snapshot(job.folder / job.snapshots.get().path)
    pixels = torch.from_numpy(np.random.default_rng(5).integers(0, 256, size=(5, 3, 8, 8), dtype=np.uint8)).float()
    with torch.inference_mode():
        expected = model((pixels - mean) / 255).numpy()
    extra = {"model.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load is deprecated, still supported
        loaded = torch.jit.load(str(job.folder / scripted.path), _extra_files=extra)
    with torch.inference_mode():
        assert np.abs(loaded(pixels).numpy() - expected).max() < 1e-4
    assert json.loads(extra["model.json"])["classes"] == ["blue", "green", "red"]
    session = onnxruntime.InferenceSession(str(job.folder / onnx.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"] and session.get_outputs()[0].name == "logits"
    logits = session.run(["logits"], {"input": pixels.numpy()})[0]  # a batch of 5: the batch axis is dynamic
    assert np.abs(logits - expected).max() < 1e-4
    listed = alice_api.get(f"/api/v1/jobs/{job.pk}/exports/").json()["results"]
    assert {e["format"] for e in listed} == {"torchscript", "onnx"}
    client.force_login(alice)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "Download and export" in page and "max abs diff" in page
    assert f"/jobs/{job.pk}/exports/{onnx.pk}/download/" in page


def _finished_job(owner, status: str = "done"):  # type: ignore[no-untyped-def]
    from django.utils import timezone

    from datasets.models import Dataset
    from jobs.models import TrainingJob

    dataset = Dataset.objects.create(owner=owner, name="d", source="example", source_name="x", image_width=8,
                                     image_height=8, channels=3, resize_mode="squash", val_percent=10,
                                     test_percent=0, seed=0, status="ready", classes=["a", "b"],
                                     split_counts={"train": 9, "val": 1, "test": 0})
    # A running job beats: one with no heartbeat is taken back by any live worker's reaper.
    job = TrainingJob.objects.create(owner=owner, dataset=dataset, name="j", network="mlp", network_spec={},
                                     status=status, heartbeat_at=timezone.now() if status == "running" else None)
    job.snapshots.create(epoch=1.0, path="snapshots/epoch_1.safetensors")
    return job


@pytest.mark.django_db
def test_it_refuses_to_export_a_job_that_is_not_done(alice_api, alice):
    job = _finished_job(alice, status="running")

    response = export(alice_api, job, "onnx")

    assert response.status_code == 409
    assert response.json()["error"] == "The job is running; export it once it is done."
    assert not Export.objects.exists()


@pytest.mark.django_db
def test_it_names_the_allowed_formats_for_an_unknown_one(alice_api, alice):
    job = _finished_job(alice)

    response = export(alice_api, job, "tflite")

    assert response.status_code == 400
    assert "archive, torchscript, onnx" in response.json()["error"]
    assert response.json()["detail"]["format"]
    missing = export(alice_api, job, "onnx", epoch=7)
    assert missing.status_code == 400 and "epoch 7" in missing.json()["error"]


@pytest.mark.django_db
def test_it_hides_another_users_export(alice, bob_api, client, bob):
    job = _finished_job(alice)
    item = Export.objects.create(job=job, snapshot=job.snapshots.get(), format="onnx", status="done",
                                 path="exports/epoch_1.onnx")

    assert bob_api.get(f"/api/v1/jobs/{job.pk}/exports/{item.pk}/").status_code == 404
    assert bob_api.get(f"/api/v1/jobs/{job.pk}/exports/").status_code == 404
    assert bob_api.post(f"/api/v1/jobs/{job.pk}/export/", {"format": "onnx"}, format="json").status_code == 404
    client.force_login(bob)
    assert client.get(f"/jobs/{job.pk}/exports/{item.pk}/download/").status_code == 404
    assert client.get(f"/jobs/{job.pk}/snapshots/1/download/").status_code == 404


def test_it_pools_to_any_size_as_adaptive_pooling_does():
    import torch

    from training.torch.export import FixedAdaptiveAvgPool

    x = torch.randn(2, 3, 7, 5)
    for size in [(3, 3), (3, 2), (1, 1), (7, 5)]:
        expected = torch.nn.AdaptiveAvgPool2d(size)(x)
        assert torch.allclose(FixedAdaptiveAvgPool((7, 5), size)(x), expected, atol=1e-6)


def test_predict_py_takes_read_only_grayscale_pixels_without_a_warning(tmp_path):
    # Pillow hands out read-only arrays; a grayscale image stays one all the way to torch, which
    # warns (once per process, hence a fresh one) unless predict.py copies it.
    shutil.copyfile(archive_predict.__file__, tmp_path / "predict.py")
    code = ("import sys; sys.path.insert(0, '.'); import numpy as np, torch, predict; "
            "images = np.zeros((1, 1, 2, 2), np.uint8); images.setflags(write=False); "
            "model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)); "
            "print(predict.classify(model, torch.zeros(1, 2, 2), images).shape)")

    ran = fresh_python(["-W", "error", "-c", code], tmp_path)

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "(1, 2)"
