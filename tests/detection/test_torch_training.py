"""Training a detector through the real torch backend on tiny generated shapes written as an
ingested detection dataset's files: boxes are the labels, the loss's parts are train curves, the
live metrics are COCO mAP of the decoded val split, and an aborted, augmented run resumes bit for bit.

Most tests train a few convolutions ending in the detection head (stride 4, classes + 4 channels),
built by the networks' own builder; one runs the `centernet` built-in itself."""
from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from networks.builtin import builtin_spec
from tests.detection.generated import class_names, write_detection_dataset
from tests.jobs.test_training_extras import Recorder, last_weights, make_plan, max_difference
from training.contract import TrainingFailed
from training.torch.data import PLACEMENTS, Split
from training.torch.loop import _Run
from training.torch.models import ModelCache
from training.torch.run import train
from training.vision_tasks.detection.metrics import coco_evaluation, map_figures

CPU = torch.device("cpu")
SIZE = 32
CLASSES = class_names(2)
# Two stride-2 convolutions: a stride-4 map, as the head must be.
CONVS = {"layers": [{"type": "conv2d", "out_channels": 16, "kernel_size": 3, "stride": 2, "padding": 1}, {"type": "relu"},
                    {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "stride": 2, "padding": 1}, {"type": "relu"},
                    {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "padding": 1}, {"type": "relu"},
                    {"type": "conv2d", "out_channels": "num_classes", "kernel_size": 1}]}
SOLVER = {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 8}
PARTS = {"loss_heatmap", "loss_size", "loss_offset"}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors on a shared machine
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def shapes(tmp_path: Path) -> Path:
    return write_detection_dataset(tmp_path / "shapes", train=24, val=8, extras=True)


def det_plan(dataset: Path, output: Path, **fields: Any) -> Any:
    return make_plan(dataset, output, task="detection", input_shape=(3, SIZE, SIZE), classes=CLASSES,
                     **{"network_spec": CONVS, **SOLVER, **fields})


def val_metrics(recorder: Recorder) -> dict[str, float]:
    last = max(step for split, _, step in recorder.points if split == "val")
    return {name: value for (split, name, step), value in recorder.points.items() if split == "val" and step == last}


def test_a_detection_split_reads_its_boxes_as_labels_wherever_it_is_placed(shapes):
    boxes = np.load(shapes / "train_boxes.npy")
    index = torch.tensor([5, 1, 9])

    for where in PLACEMENTS[1:]:  # memory, map (device: a CUDA machine's)
        split = Split.open(shapes, "train", CPU, forced=where, labels="boxes")
        images, labels = split.batch(index)
        assert len(split) == 24 and labels.dtype == torch.float32 and labels.shape == (3, 3, 6)
        assert np.array_equal(labels.numpy(), boxes[[1, 5, 9]])
        assert np.array_equal(images.numpy(), np.load(shapes / "train_images.npy")[[1, 5, 9]])


def test_a_boxes_file_of_the_wrong_length_is_refused_naming_it(shapes):
    np.save(shapes / "val_boxes.npy", np.load(shapes / "val_boxes.npy")[:5])
    with pytest.raises(TrainingFailed, match="val_boxes.npy holds 5 rows for 8 images"):
        Split.open(shapes, "val", CPU, labels="boxes")


def test_a_missing_boxes_file_fails_the_run_naming_it(shapes, tmp_path):
    (shapes / "train_boxes.npy").unlink()
    with pytest.raises(TrainingFailed, match="train_boxes.npy"):
        _Run(det_plan(shapes, tmp_path / "job"), Recorder(), CPU)


def test_a_detector_learns_the_shapes_and_reports_each_loss_part(tmp_path):
    dataset = write_detection_dataset(tmp_path / "shapes", train=96, val=24, seed=2)
    output = tmp_path / "job"
    recorder = Recorder()

    assert train(det_plan(dataset, output, epochs=30, val_interval=10, snapshot_interval=30,
                          augmentation={"flip": "horizontal"}), recorder) == "done"

    metrics = val_metrics(recorder)
    print("val after 30 epochs:", metrics)
    assert set(metrics) == {"loss", "map_50", "map"}
    assert metrics["map_50"] > 0.6 and metrics["map"] > 0.25
    train_names = {name for split, name, _ in recorder.points if split == "train"}
    assert train_names == {"loss", "lr"} | PARTS
    first, last = (min(step for s, n, step in recorder.points if n == "loss_heatmap"),
                   max(step for s, n, step in recorder.points if n == "loss_heatmap"))
    for name in PARTS:  # each part a curve of its own, and each went down
        assert recorder.points[("train", name, last)] < recorder.points[("train", name, first)], name
    total = recorder.points[("train", "loss", last)]
    parts = {name: recorder.points[("train", name, last)] for name in PARTS}
    assert total == pytest.approx(parts["loss_heatmap"] + 0.1 * parts["loss_size"] + parts["loss_offset"], rel=1e-4)
    assert json.loads((output / "model.json").read_text())["task"] == "detection"


def test_validation_is_the_coco_map_of_the_decoded_split_and_inference_answers_boxes(shapes, tmp_path):
    output = tmp_path / "job"
    recorder = Recorder()
    assert train(det_plan(shapes, output, epochs=6), recorder) == "done"

    images = np.load(shapes / "val_images.npy")
    detections = ModelCache().infer(output / "snapshots" / "epoch_6.safetensors", images)
    figures = map_figures(coco_evaluation(detections, np.load(shapes / "val_boxes.npy"), len(CLASSES)))

    assert detections.shape == (8, 100, 6) and detections.dtype == np.float32
    assert bool((np.diff(detections[:, :, 4], axis=1) <= 0).all())  # best first
    assert detections[:, :, :4].min() >= 0 and detections[:, :, :4].max() <= SIZE
    assert set(np.unique(detections[:, :, 5])) <= {0.0, 1.0, -1.0}
    val = val_metrics(recorder)
    assert val["map_50"] == pytest.approx(figures["map_50"]) and val["map"] == pytest.approx(figures["map"])
    assert val["loss"] > 0


def test_the_centernet_builtin_trains_through_the_loop_with_its_heatmap_biases_at_minus_2_19(shapes, tmp_path):
    spec = builtin_spec("centernet", (3, SIZE, SIZE), len(CLASSES) + 4)
    plan = det_plan(shapes, tmp_path / "job", network_spec=spec, optimizer="adamw", learning_rate=0.002, epochs=1)

    run = _Run(plan, Recorder(), CPU)
    head = [m for m in run.net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    assert head.out_channels == 6 and torch.allclose(head.bias[:2], torch.tensor(-2.1972), atol=1e-4)
    recorder = Recorder()
    assert train(plan, recorder) == "done"
    assert all(math.isfinite(v) for v in recorder.points.values())
    assert {name for split, name, _ in recorder.points if split == "val"} == {"loss", "map_50", "map"}


def test_an_augmented_detection_job_resumes_bit_for_bit(shapes, tmp_path):
    fields = {"epochs": 4, "snapshot_interval": 0.5, "accumulate": 2, "seed": 3,
              "augmentation": {"flip": "both", "crop_padding": 3, "scale": [0.8, 1.2], "translate": 0.1,
                               "noise_std": 0.05}}
    reference = Recorder()
    assert train(det_plan(shapes, tmp_path / "reference", **fields), reference) == "done"

    output = tmp_path / "resumed"
    first = Recorder(stop_after=7)
    assert train(det_plan(shapes, output, **fields), first) == "aborted"
    resumed = Recorder()
    assert train(det_plan(shapes, output, resume_from_epoch=max(first.snapshots), **fields), resumed) == "done"

    assert max(first.snapshots) == 2.0  # 3 steps an epoch: a snapshot every 2 steps or so, the last at step 6
    assert max_difference(last_weights(tmp_path / "reference"), last_weights(output)) == 0.0
    assert resumed.points == {k: v for k, v in reference.points.items() if k[2] > 6}
    assert {name for _, name, step in resumed.points if step == 7} >= PARTS  # the parts resumed mid-report too


def test_an_aborted_detection_job_stops_and_keeps_its_snapshots(shapes, tmp_path):
    output = tmp_path / "job"
    recorder = Recorder(stop_after=4)

    assert train(det_plan(shapes, output, epochs=10, snapshot_interval=1.0), recorder) == "aborted"

    assert recorder.step == 4 and recorder.snapshots == [1.0]
    assert (output / "snapshots" / "epoch_1.safetensors").exists()


def test_a_bf16_detection_job_trains_and_reports_finite_metrics(tmp_path):
    dataset = write_detection_dataset(tmp_path / "shapes", train=96, val=24, seed=2)
    recorder = Recorder()
    assert train(det_plan(dataset, tmp_path / "job", epochs=20, amp="bf16", val_interval=20,
                          snapshot_interval=20), recorder) == "done"

    val = val_metrics(recorder)
    assert all(math.isfinite(value) for value in recorder.points.values())
    assert val["map_50"] > 0.4, val  # found the shapes under bf16 autocast (the loss itself runs in float32)


def test_boxes_read_from_the_map_on_a_prefetch_thread_train_what_boxes_in_memory_train(shapes, tmp_path):
    fields = {"epochs": 2, "augmentation": {"flip": "horizontal", "crop_padding": 2}}
    memory, mapped = Recorder(), Recorder()
    assert train(det_plan(shapes, tmp_path / "memory", data_placement="memory", **fields), memory) == "done"
    assert train(det_plan(shapes, tmp_path / "map", data_placement="map", **fields), mapped) == "done"

    assert max_difference(last_weights(tmp_path / "memory"), last_weights(tmp_path / "map")) == 0.0
    assert memory.points == mapped.points


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("where,amp", [("device", "off"), ("map", "bf16")])
def test_it_trains_on_cuda_with_boxes_on_the_device_or_prefetched_pinned(tmp_path, where, amp):
    dataset = write_detection_dataset(tmp_path / "shapes", train=96, val=24, seed=2)
    cuda = torch.device("cuda:0")
    split = Split.open(dataset, "train", cuda, forced=where, labels="boxes")
    _, boxes = split.batch(torch.arange(8), pin=where != "device")
    assert boxes.dtype == torch.float32  # a pinned gather keeps the map's own dtype
    assert torch.equal(boxes.cpu(), Split.open(dataset, "train", forced="map", labels="boxes").batch(torch.arange(8))[1])
    assert boxes.is_cuda if where == "device" else boxes.is_pinned()

    recorder = Recorder()
    plan = det_plan(dataset, tmp_path / "job", device="cuda:0", data_placement=where, amp=amp, epochs=30,
                    val_interval=30, snapshot_interval=30, augmentation={"flip": "horizontal", "scale": [0.9, 1.1]})
    assert train(plan, recorder) == "done"
    assert val_metrics(recorder)["map_50"] > 0.5
