"""Exporting a detector (the worker's export service, training.torch.export): TorchScript and ONNX of
the network give the torch model's head, checked with ONNX Runtime, and decode to the same boxes; the
archive's predict.py, run on its own in a subprocess, prints as JSON the boxes the workbench's own
inference answers, on the image's own pixels (a crop-resized dataset: the crop undone)."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.detection.generated import write_detection_dataset
from tests.detection.test_torch_training import CLASSES, CONVS, SIZE
from tests.jobs.test_training_extras import Recorder, make_plan
from training.torch import archive_predict
from training.torch.detection import decode
from training.torch.export import export_snapshot, sample_inputs
from training.torch.models import ModelCache, load_snapshot
from training.torch.run import train
from training.vision_tasks import vision_task

PREPROCESSING = {"width": SIZE, "height": SIZE, "channels": 3, "resize_mode": "crop", "seed": 0}


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("detection-export")
    dataset = write_detection_dataset(root / "shapes", train=48, val=8, seed=4)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        plan = make_plan(dataset, root / "job", task="detection", input_shape=(3, SIZE, SIZE), classes=CLASSES,
                         network_spec=CONVS, optimizer="adam", learning_rate=0.01, batch_size=8, epochs=8,
                         snapshot_interval=8, preprocessing=PREPROCESSING)
        assert train(plan, Recorder()) == "done"
    finally:
        torch.set_num_threads(threads)
    return root / "job" / "snapshots" / "epoch_8.safetensors"


def torch_head(snapshot: Path, pixels: torch.Tensor) -> np.ndarray:
    model, mean = load_snapshot(snapshot)
    with torch.inference_mode():
        return model((pixels - mean) / 255).numpy()


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_a_graph_export_gives_the_torch_models_head_and_decodes_to_its_boxes(snapshot, tmp_path, fmt):
    target = tmp_path / f"model.{fmt}"
    result = export_snapshot(snapshot, fmt, target)
    pixels = sample_inputs((3, SIZE, SIZE), count=4, seed=3)

    if fmt == "torchscript":
        got = torch.jit.load(str(target))(pixels).detach().numpy()
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
        got = session.run(["logits"], {"input": pixels.numpy()})[0]

    expected = torch_head(snapshot, pixels)
    assert got.shape == expected.shape == (4, len(CLASSES) + 4, SIZE // 4, SIZE // 4)
    assert np.abs(got - expected).max() < 1e-3 and result["max_abs_diff"] < 1e-3
    boxes, reference = decode(torch.from_numpy(got), len(CLASSES)), decode(torch.from_numpy(expected), len(CLASSES))
    assert np.abs(boxes[:, :5].numpy() - reference[:, :5].numpy()).max() < 1e-2  # the 5 best of each image


def test_the_archive_documents_the_head_and_where_decoding_happens(snapshot, tmp_path):
    export_snapshot(snapshot, "archive", tmp_path / "model.zip")
    with zipfile.ZipFile(tmp_path / "model.zip") as archive:
        readme = archive.read("README.md").decode()

    assert f"CenterNet's head (N, {len(CLASSES) + 4}, {SIZE // 4}, {SIZE // 4})" in readme
    assert "Decoding is not in\n   the exported graph" in readme and "--score-threshold" in readme


def test_the_archives_predict_py_prints_the_boxes_inference_answers_on_the_images_own_pixels(snapshot, tmp_path):
    export_snapshot(snapshot, "archive", tmp_path / "model.zip")
    folder = tmp_path / "archive"
    with zipfile.ZipFile(tmp_path / "model.zip") as archive:
        archive.extractall(folder)
    # A wide photograph: "crop" scales it to 48x32 and cuts 8 px off each side.
    val = np.load(snapshot.parent.parent.parent / "shapes" / "val_images.npy")
    wide = np.concatenate([val[0], val[1][:, :, :16]], axis=2).transpose(1, 2, 0)  # 32 x 48
    Image.fromarray(wide).resize((96, 64), Image.Resampling.NEAREST).save(tmp_path / "wide.png")

    run = subprocess.run([sys.executable, str(folder / "predict.py"), str(tmp_path / "wide.png"), "--json",
                          "--score-threshold", "0.05"], capture_output=True, text=True, timeout=120, cwd=folder)
    assert run.returncode == 0, run.stderr
    printed = json.loads(run.stdout)[0]

    pixels, own = archive_predict.load_image_sized(tmp_path / "wide.png", PREPROCESSING)
    outputs = ModelCache().infer(snapshot, pixels[np.newaxis])[0]
    task = vision_task("detection")
    scaled = archive_predict.scaled_size(own[0], own[1], SIZE, SIZE, "crop")
    answer = task.answer_to_image(task.infer_answer(outputs, CLASSES, 0.05), own[0], own[1], scaled,
                                  fitted=(SIZE, SIZE))

    assert (printed["width"], printed["height"]) == own == (96, 64) and scaled == (48, 32)
    assert len(printed["boxes"]) == len(answer["boxes"]) > 0
    for mine, theirs in zip(printed["boxes"], answer["boxes"]):
        assert mine["label"] == theirs["label"] and mine["score"] == pytest.approx(theirs["score"], abs=1e-5)
        assert mine["box"] == pytest.approx(theirs["box"], abs=0.01)
    assert max(b["box"][2] for b in printed["boxes"]) <= 96 and min(b["box"][0] for b in printed["boxes"]) >= 0


def test_inspecting_a_detector_shows_its_layers_and_its_best_boxes(snapshot):
    from training.torch.inspect import inspect_snapshot

    image = np.load(snapshot.parent.parent.parent / "shapes" / "val_images.npy")[0]
    result = inspect_snapshot(snapshot, image)

    assert result["layers"][-1]["output_shape"] == [len(CLASSES) + 4, SIZE // 4, SIZE // 4]
    assert 0 < len(result["predictions"]) <= 5
    scores = [p["probability"] for p in result["predictions"]]
    assert scores == sorted(scores, reverse=True) and all(p["label"] in CLASSES for p in result["predictions"])
    assert all(0 <= v <= SIZE for p in result["predictions"] for v in p["box"])
