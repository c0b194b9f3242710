"""Exporting a segmentation model: each format of a tiny trained network with every new layer type
(concat_skip, conv_transpose2d, upsample to the input's size) answers as the torch model does, and the
archive's predict.py, run on its own in a subprocess, writes the mask the model predicts, at the
image's own size. The export runs in this process (the worker's service itself)."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from results.models import Export
from tests.conftest import OUTCOME_SECONDS, wait_for
from tests.segmentation.conftest import CLASSES, segmentation_job
from training.torch.export import sample_inputs
from training.torch.models import load_snapshot
from training.vision_tasks.segmentation.metrics import mask_to_image

# Committed rows, run by the real worker: an export run inside a test's open transaction would
# hold its row's lock against its own heartbeat thread (on PostgreSQL) once the export outlasts a beat.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def exported(alice, alice_api, trained, celery_worker):  # type: ignore[no-untyped-def]
    """fmt -> its finished Export of the latest snapshot of one segmentation job."""
    job = segmentation_job(alice, trained)

    def export(fmt: str) -> Export:
        response = alice_api.post(f"/api/v1/jobs/{job.pk}/export/", {"format": fmt}, format="json")
        assert response.status_code == 201, response.json()
        done = wait_for(lambda: Export.objects.filter(pk=response.json()["id"], status__in=("done", "error")).first(),
                        OUTCOME_SECONDS, "the export to finish")
        assert done.status == "done", done.error
        return done

    return export


def torch_logits(job, pixels: torch.Tensor) -> np.ndarray:  # type: ignore[no-untyped-def]
    model, mean = load_snapshot(job.folder / job.snapshots.order_by("-epoch").first().path)
    with torch.inference_mode():
        return model((pixels - mean) / 255).numpy()


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_a_graph_export_gives_the_torch_models_logits_per_pixel(exported, fmt):
    export = exported(fmt)
    path = export.job.folder / export.path
    pixels = sample_inputs((3, 16, 16), count=4, seed=3)

    if fmt == "torchscript":
        got = torch.jit.load(str(path))(pixels).detach().numpy()
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(["logits"], {"input": pixels.numpy()})[0]

    expected = torch_logits(export.job, pixels)
    assert got.shape == expected.shape == (4, len(CLASSES), 16, 16)
    assert np.abs(got - expected).max() < 1e-3
    assert export.result["max_abs_diff"] < 1e-3 and export.result["classes"] == CLASSES


def test_the_archives_predict_py_writes_the_models_mask_at_the_images_own_size(exported, tmp_path):
    export = exported("archive")
    folder = tmp_path / "archive"
    with zipfile.ZipFile(export.job.folder / export.path) as archive:
        archive.extractall(folder)
    # As if the dataset had been cropped: predict.py must undo the crop to lay the mask over the image.
    meta = json.loads((folder / "model.json").read_text())
    meta["preprocessing"]["resize_mode"] = "crop"
    (folder / "model.json").write_text(json.dumps(meta))
    pixels = np.full((30, 50, 3), 40, np.uint8)
    pixels[8:22, 20:34] = 230
    Image.fromarray(pixels).save(tmp_path / "wide.png")

    run = subprocess.run([sys.executable, "predict.py", str(tmp_path / "wide.png"), "--out", str(tmp_path / "mask.png"),
                          "--json"], cwd=folder, capture_output=True, text=True, timeout=120)

    assert run.returncode == 0, run.stderr
    mask = np.array(Image.open(tmp_path / "mask.png"))
    assert mask.shape == (30, 50)
    # The model's own mask: the network saw the middle 16x16 of the image scaled to 27x16.
    scaled = np.asarray(Image.fromarray(pixels).resize((27, 16), Image.Resampling.BILINEAR))[:, 5:21]
    logits = torch_logits(export.job, torch.from_numpy(scaled.transpose(2, 0, 1).copy()).float()[None])
    expected = mask_to_image(logits.argmax(1)[0].astype(np.uint8), 50, 30, (27, 16))
    assert np.array_equal(mask, expected)
    answer = json.loads(run.stdout)[0]
    assert (answer["width"], answer["height"]) == (50, 30)
    assert answer["class_pixels"]["square"] == pytest.approx(float((mask == 1).mean()))


def test_the_archives_readme_and_model_json_say_it_segments(exported, tmp_path):
    export = exported("archive")

    with zipfile.ZipFile(export.job.folder / export.path) as archive:
        readme = archive.read("README.md").decode()
        meta = json.loads(archive.read("model.json"))

    assert "python predict.py image.png --out mask.png" in readme and "logits per pixel (N, 2, 16, 16)" in readme
    assert meta["task"] == "segmentation"
    assert {layer["type"] for layer in meta["layers"]} >= {"concat_skip", "conv2d"}


def test_predict_py_asks_a_segmentation_model_where_its_masks_go(exported, tmp_path):
    export = exported("archive")
    with zipfile.ZipFile(export.job.folder / export.path) as archive:
        archive.extractall(tmp_path)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "dark.png")

    run = subprocess.run([sys.executable, "predict.py", "dark.png"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)

    assert run.returncode == 2 and "--out mask.png" in run.stderr
