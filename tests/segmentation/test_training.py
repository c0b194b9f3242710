"""Training a segmentation network through the real torch backend on a tiny dataset written to disk:
masks are the labels, unlabelled pixels count nowhere, the live metrics are pixel accuracy and mean
IoU of the whole val split, and an aborted run resumes bit for bit.

The network is a few padded convolutions built here: networks.spec still asks every network to end
in one score per class, so the tests stand in for training.torch.loop.build_model (the segmentation
built-ins and a conv2d head with "num_classes" come with the networks work)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from tests.jobs.test_training_extras import Recorder, last_weights, make_plan, max_difference
from training.torch.data import PLACEMENTS, Split
from training.torch.loop import _Run
from training.torch.run import train
from training.torch.vision_tasks import torch_task
from training.vision_tasks import VISION_TASKS
from training.vision_tasks.base import Metric, VisionTask
from training.vision_tasks.segmentation.metrics import evaluation_report, infer_answer

CPU = torch.device("cpu")
IGNORE = 255
SIZE = 16
CONVS = {"layers": [{"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1}, {"type": "relu"},
                    {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1}, {"type": "relu"},
                    {"type": "conv2d", "out_channels": 2, "kernel_size": 1}]}
SOLVER = {"optimizer": "adam", "learning_rate": 0.02, "batch_size": 8}


class SegmentationStandIn(VisionTask):
    """What training reads of the segmentation task, until training.vision_tasks.segmentation registers it."""

    name = "segmentation"
    title = "Semantic segmentation"
    dataset_files = ("{split}_images.npy", "{split}_masks.npy", "mean.npy")
    networks = ()
    metrics = (Metric("mean_iou", "Mean IoU", "max"), Metric("pixel_accuracy", "Pixel accuracy", "max"))
    pages: dict[str, str] = {}

    def head(self, classes: list[str]) -> dict[str, Any]:
        return {"outputs": len(classes), "kind": "logits per pixel"}

    def infer_answer(self, outputs: np.ndarray, classes: list[str]) -> dict[str, Any]:
        return infer_answer(outputs, classes)

    def evaluation_report(self, outputs: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, Any]:
        return evaluation_report(outputs, labels, classes)


def convs(spec: dict[str, Any], input_shape: tuple[int, int, int], outputs: int, task: str | None = None) -> nn.Module:
    """The CONVS spec as torch modules: every layer keeps H x W, the last gives `outputs` channels."""
    layers: list[nn.Module] = []
    channels = input_shape[0]
    for layer in spec["layers"]:
        if layer["type"] == "relu":
            layers.append(nn.ReLU())
            continue
        layers.append(nn.Conv2d(channels, layer["out_channels"], layer["kernel_size"], padding=layer.get("padding", 0)))
        channels = layer["out_channels"]
    assert channels == outputs
    return nn.Sequential(*layers)


@pytest.fixture(autouse=True)
def segmentation(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if "segmentation" not in VISION_TASKS:
        monkeypatch.setitem(VISION_TASKS, "segmentation", SegmentationStandIn())
    monkeypatch.setattr("training.torch.loop.build_model", convs)
    # Tensors this small gain nothing from more threads, and lose much on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_squares(folder: Path, train: int = 24, val: int = 8, seed: int = 0) -> Path:
    """Bright squares (class 1) on a dark background (class 0), a few pixels unlabelled."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("val", val)):
        masks = np.zeros((n, SIZE, SIZE), np.uint8)
        for mask in masks:
            side = rng.integers(4, 9)
            top, left = rng.integers(0, SIZE - side, 2)
            mask[top : top + side, left : left + side] = 1
        images = np.where(masks[:, None] == 1, rng.integers(150, 256, (n, 3, SIZE, SIZE)),
                          rng.integers(0, 90, (n, 3, SIZE, SIZE))).astype(np.uint8)
        masks[rng.random(masks.shape) < 0.05] = IGNORE
        np.save(folder / f"{split}_images.npy", images)
        np.save(folder / f"{split}_masks.npy", masks)
    np.save(folder / "mean.npy", np.load(folder / "train_images.npy").mean(axis=0).astype(np.float32))
    (folder / "classes.json").write_text(json.dumps(["background", "square"]))
    return folder


@pytest.fixture
def squares(tmp_path: Path) -> Path:
    return write_squares(tmp_path / "squares")


def seg_plan(dataset: Path, output: Path, **fields: Any) -> Any:
    return make_plan(dataset, output, task="segmentation", input_shape=(3, SIZE, SIZE), classes=["background", "square"],
                     network_spec=CONVS, **{**SOLVER, **fields})


def val_metrics(recorder: Recorder) -> dict[str, float]:
    last = max(step for split, _, step in recorder.points if split == "val")
    return {name: value for (split, name, step), value in recorder.points.items() if split == "val" and step == last}


def test_a_segmentation_split_reads_its_masks_as_labels_wherever_it_is_placed(squares):
    masks = np.load(squares / "train_masks.npy")
    index = torch.tensor([5, 1, 9])

    for where in PLACEMENTS[1:]:  # memory, map (device: tests/jobs/test_gpu.py's machine)
        split = Split.open(squares, "train", CPU, forced=where, masks=True)
        images, labels = split.batch(index)
        assert len(split) == 24 and labels.dtype == torch.uint8
        assert np.array_equal(labels.numpy(), masks[[1, 5, 9]])
        assert np.array_equal(images.numpy(), np.load(squares / "train_images.npy")[[1, 5, 9]])


def test_the_loss_leaves_out_unlabelled_pixels_and_honours_label_smoothing(squares, tmp_path):
    run = _Run(seg_plan(squares, tmp_path / "job", label_smoothing=0.1), Recorder(), CPU)
    logits = torch.tensor([[[[4.0, -4.0]], [[-4.0, 4.0]]]])  # (1, 2, 1, 2): pixel 0 says class 0, pixel 1 class 1
    masks = torch.tensor([[[0, IGNORE]]], dtype=torch.uint8)

    loss = run.loss_fn(logits, run.task.targets(masks))

    assert run.loss_fn.ignore_index == IGNORE and run.loss_fn.label_smoothing == 0.1
    plain = torch.nn.functional.cross_entropy(logits[..., :1], torch.tensor([[[0]]]), label_smoothing=0.1)
    assert float(loss) == pytest.approx(float(plain))


def test_validation_matches_the_evaluation_of_the_whole_split(squares, tmp_path):
    """Batches of 3 over 8 images: the figures come from one matrix, not from a mean of batches."""
    run = _Run(seg_plan(squares, tmp_path / "job"), Recorder(), CPU)

    live = torch_task("segmentation").validate(run.net, run.val_split, run.mean, CPU, 3, run.plan)

    images = torch.from_numpy(np.load(squares / "val_images.npy")).float()
    with torch.inference_mode():
        probabilities = torch.softmax(run.net((images - run.mean) / 255.0), 1).numpy()
    report = evaluation_report(probabilities, np.load(squares / "val_masks.npy"), ["background", "square"])
    assert live["pixel_accuracy"] == pytest.approx(report["pixel_accuracy"])
    assert live["mean_iou"] == pytest.approx(report["mean_iou"])
    assert live["loss"] > 0


def test_a_segmentation_network_learns_the_squares(squares, tmp_path):
    output = tmp_path / "job"
    recorder = Recorder()

    assert train(seg_plan(squares, output, epochs=20, augmentation={"flip": "both", "rot90": True},
                          snapshot_interval=10, val_interval=5), recorder) == "done"

    metrics = val_metrics(recorder)
    print("val after 20 epochs:", metrics)
    assert set(metrics) == {"loss", "pixel_accuracy", "mean_iou"}
    assert metrics["pixel_accuracy"] > 0.9 and metrics["mean_iou"] > 0.7
    assert recorder.snapshots == [10, 20] and (output / "snapshots" / "epoch_20.safetensors").exists()
    assert json.loads((output / "model.json").read_text())["task"] == "segmentation"


def test_an_augmented_segmentation_job_resumes_bit_for_bit(squares, tmp_path):
    fields = {"epochs": 4, "snapshot_interval": 0.5, "accumulate": 2, "seed": 3,
              "augmentation": {"flip": "both", "rot90": True, "rotate_degrees": 20, "crop_padding": 2, "noise_std": 0.05}}
    reference = Recorder()
    assert train(seg_plan(squares, tmp_path / "reference", **fields), reference) == "done"

    output = tmp_path / "resumed"
    first = Recorder(stop_after=7)
    assert train(seg_plan(squares, output, **fields), first) == "aborted"
    resumed = Recorder()
    assert train(seg_plan(squares, output, resume_from_epoch=max(first.snapshots), **fields), resumed) == "done"

    assert max(first.snapshots) == 2.0  # 3 steps an epoch: a snapshot every 2 steps or so, the last at step 6
    assert max_difference(last_weights(tmp_path / "reference"), last_weights(output)) == 0.0
    assert resumed.points == {k: v for k, v in reference.points.items() if k[2] > 6}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("where,amp", [("device", "off"), ("map", "bf16")])
def test_it_trains_on_cuda_with_masks_on_the_device_or_prefetched_pinned(squares, tmp_path, where, amp):
    cuda = torch.device("cuda:0")
    split = Split.open(squares, "train", cuda, forced=where, masks=True)
    images, masks = split.batch(torch.arange(8), pin=where != "device")
    assert torch.equal(masks.cpu(), Split.open(squares, "train", forced="map", masks=True).batch(torch.arange(8))[1])
    assert masks.is_cuda if where == "device" else masks.is_pinned()

    recorder = Recorder()
    plan = seg_plan(squares, tmp_path / "job", device="cuda:0", data_placement=where, amp=amp, epochs=20,
                    snapshot_interval=20, augmentation={"flip": "both", "rotate_degrees": 15, "crop_padding": 2})
    assert train(plan, recorder) == "done"
    assert val_metrics(recorder)["mean_iou"] > 0.7
