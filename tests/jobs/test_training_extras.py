"""The torch backend's training step with augmentation, the mean choice, accumulation, gradient
clipping and label smoothing: run through the real backend on a tiny dataset written to disk."""
from __future__ import annotations

import json
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.jobs.test_augmentation import EVERYTHING
from training.contract import TrainingPlan
from training.torch import archive_predict
from training.torch.export import export_snapshot
from training.torch.loop import _Run
from training.torch.models import ModelCache
from training.torch.run import train

CPU = torch.device("cpu")
LINEAR = {"layers": [{"type": "flatten"}, {"type": "linear", "out_features": "num_classes"}]}


class Recorder:
    """A reporter that keeps what it is told; it asks to stop once step `stop_after` is reported."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after, self.step = stop_after, 0
        self.points: dict[tuple[str, str, int], float] = {}
        self.snapshots: list[float] = []

    def metric(self, *, split: str, name: str, value: float, epoch: float, step: int) -> None:
        self.points[(split, name, step)] = value

    def progress(self, *, epoch: float, step: int, total_steps: int) -> None:
        self.step = step

    def snapshot(self, *, epoch: float, path: str, step: int | None = None) -> None:
        self.snapshots.append(epoch)

    def log(self, message: str) -> None:
        pass

    def using_device(self, name: str, processes: tuple[int, ...] = ()) -> None:
        pass

    def should_stop(self) -> bool:
        return self.stop_after is not None and self.step >= self.stop_after


def write_dataset(folder: Path, channels: int = 3, train: int = 32, val: int = 8, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("val", val)):
        labels = np.arange(n) % 2
        images = rng.integers(0, 120, size=(n, channels, 6, 6)) + labels[:, None, None, None] * 120
        np.save(folder / f"{split}_images.npy", images.astype(np.uint8))
        np.save(folder / f"{split}_labels.npy", labels.astype(np.int64))
    train_images = np.load(folder / "train_images.npy")
    np.save(folder / "mean.npy", train_images.mean(axis=0).astype(np.float32))
    return folder


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "dataset")


def make_plan(dataset: Path, output: Path, **fields: Any) -> TrainingPlan:
    plan = TrainingPlan(job_id=1, output_folder=output, dataset_folder=dataset, input_shape=(3, 6, 6),
                        classes=["a", "b"], network_spec=LINEAR, epochs=1, batch_size=8, optimizer="sgd",
                        learning_rate=0.1, momentum=0.0, weight_decay=0.0, lr_policy="fixed", lr_params={},
                        seed=5, device="cpu", val_interval=1.0, snapshot_interval=1.0,
                        preprocessing={"width": 6, "height": 6, "channels": 3, "resize_mode": "squash", "seed": 0})
    return replace(plan, **fields)


def last_weights(output: Path) -> dict[str, torch.Tensor]:
    latest = max(output.glob("snapshots/epoch_*.json"), key=lambda p: json.loads(p.read_text())["step"])
    return load_file(latest.with_suffix(".safetensors"))


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


# --- augmentation reaches training batches, and only them --------------------------------------

def test_training_batches_are_augmented_and_validation_batches_are_not(dataset, tmp_path):
    run = _Run(make_plan(dataset, tmp_path / "job", augmentation={**EVERYTHING, "rotate_degrees": 90}),
               Recorder(), CPU)
    plain = _Run(make_plan(dataset, tmp_path / "plain"), Recorder(), CPU)
    pixels = run.train_split.images[:8]

    assert not torch.allclose(run.train_input(pixels), plain.train_input(pixels), atol=1e-3)
    seen: list[torch.Tensor] = []
    run.model.register_forward_hook(lambda module, args, out: seen.append(args[0].clone()))
    run._validate(step=1)

    val = run.val_split.images.float()
    assert torch.equal(torch.cat(seen), (val - plain.mean) / 255.0)


def test_a_plain_job_normalises_exactly_as_before(dataset, tmp_path):
    run = _Run(make_plan(dataset, tmp_path / "job"), Recorder(), CPU)
    pixels = run.train_split.images[:4]
    mean = torch.from_numpy(np.load(dataset / "mean.npy"))

    assert run.augment is None
    assert torch.equal(run.train_input(pixels), (pixels.float() - mean) / 255.0)


@pytest.mark.parametrize("mode", ["image", "pixel", "none"])
def test_the_mean_choice_is_subtracted_in_training_inference_and_the_exported_predict_py(dataset, tmp_path, mode):
    output = tmp_path / "job"
    plan = make_plan(dataset, output, augmentation={"mean": mode})
    assert train(plan, Recorder()) == "done"
    image_mean = torch.from_numpy(np.load(dataset / "mean.npy"))
    want = {"image": image_mean, "pixel": image_mean.mean(dim=(1, 2), keepdim=True).expand(3, 6, 6),
            "none": torch.zeros(3, 6, 6)}[mode]
    pixels = np.load(dataset / "val_images.npy")

    run = _Run(plan, Recorder(), CPU)
    assert torch.allclose(run.train_input(torch.from_numpy(pixels)), (torch.from_numpy(pixels).float() - want) / 255)
    assert torch.allclose(load_file(output / "mean.safetensors")["mean"], want)
    assert json.loads((output / "model.json").read_text())["preprocessing"]["mean"] == mode
    model = run.model
    model.load_state_dict(last_weights(output))
    expected = torch.softmax(model.eval()((torch.from_numpy(pixels).float() - want) / 255), 1).detach().numpy()
    weights = output / "snapshots" / "epoch_1.safetensors"
    assert np.allclose(ModelCache().infer(weights, pixels), expected, atol=1e-6)
    export_snapshot(weights, "archive", tmp_path / "model.zip")
    with zipfile.ZipFile(tmp_path / "model.zip") as archive:
        archive.extractall(tmp_path / "archive")
    exported, mean, meta = archive_predict.load(tmp_path / "archive")  # what predict.py runs
    assert meta["preprocessing"]["mean"] == mode
    assert np.allclose(archive_predict.classify(exported, mean, pixels), expected, atol=1e-6)
    readme = (tmp_path / "archive" / "README.md").read_text()
    assert {"image": "Subtract the mean image", "pixel": "per-channel means", "none": "subtracts no mean"}[mode] in readme


def test_an_augmented_job_trains_and_its_inference_is_not_augmented(dataset, tmp_path):
    output = tmp_path / "job"
    assert train(make_plan(dataset, output, epochs=2, augmentation=EVERYTHING), Recorder()) == "done"
    pixels = np.load(dataset / "val_images.npy")
    cache = ModelCache()
    weights = output / "snapshots" / "epoch_2.safetensors"

    assert np.array_equal(cache.infer(weights, pixels), cache.infer(weights, pixels))


# --- solver extras ----------------------------------------------------------------------------

def test_accumulating_two_batches_of_16_steps_like_one_batch_of_32(dataset, tmp_path):
    one = make_plan(dataset, tmp_path / "one", batch_size=32, learning_rate=0.5)
    two = make_plan(dataset, tmp_path / "two", batch_size=16, accumulate=2, learning_rate=0.5)

    train(one, Recorder())
    train(two, Recorder())

    start = _Run(one, Recorder(), CPU).model.state_dict()
    assert max_difference(last_weights(tmp_path / "one"), start) > 1e-3, "a step was taken"
    assert max_difference(last_weights(tmp_path / "one"), last_weights(tmp_path / "two")) < 1e-6


def test_a_gradient_norm_limit_bounds_the_step(dataset, tmp_path):
    plan = make_plan(dataset, tmp_path / "clipped", batch_size=32, learning_rate=1.0, grad_clip=0.01)
    start = {k: v.clone() for k, v in _Run(plan, Recorder(), CPU).model.state_dict().items()}

    train(plan, Recorder())

    after = last_weights(tmp_path / "clipped")
    moved = torch.sqrt(sum(((after[k] - start[k]) ** 2).sum() for k in start))
    assert 0 < float(moved) <= 0.01 + 1e-6


def test_label_smoothing_reaches_the_loss(dataset, tmp_path):
    run = _Run(make_plan(dataset, tmp_path / "job", label_smoothing=0.2), Recorder(), CPU)
    logits, labels = torch.tensor([[10.0, -10.0]]), torch.tensor([0])

    assert run.loss_fn.label_smoothing == 0.2
    assert float(run.loss_fn(logits, labels)) > 1.0 > float(torch.nn.functional.cross_entropy(logits, labels))


# --- resume -----------------------------------------------------------------------------------

@pytest.mark.parametrize("devices", [(), ("cpu", "cpu")], ids=["one process", "two DDP ranks"])
def test_an_augmented_accumulating_job_resumes_bit_for_bit(dataset, tmp_path, devices):
    """Snapshots every half epoch fall inside groups of 3 accumulated batches: the pending
    gradients and the augmentation generator travel with them (with two ranks, each rank's
    generator, kept in rank 0's snapshot; the all-reduce's sums leave float noise)."""
    fields = {"epochs": 3, "batch_size": 4, "snapshot_interval": 0.5, "accumulate": 3, "augmentation": EVERYTHING,
              "optimizer": "adam", "learning_rate": 0.01, "devices": devices}
    reference = Recorder()
    assert train(make_plan(dataset, tmp_path / "reference", **fields), reference) == "done"

    output = tmp_path / "resumed"
    first = Recorder(stop_after=13)
    assert train(make_plan(dataset, output, **fields), first) == "aborted"
    resumed = Recorder()
    assert train(make_plan(dataset, output, resume_from_epoch=max(first.snapshots), **fields), resumed) == "done"

    assert max(first.snapshots) == 1.5
    after = {k: v for k, v in reference.points.items() if k[2] > 12}
    if devices:
        assert max_difference(last_weights(tmp_path / "reference"), last_weights(output)) < 1e-6
        assert resumed.points == pytest.approx(after)
    else:
        assert max_difference(last_weights(tmp_path / "reference"), last_weights(output)) == 0.0
        assert resumed.points == after
