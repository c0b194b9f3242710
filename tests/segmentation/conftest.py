"""A segmentation job trained for real and laid out as the web finds one: a tiny network with every
new layer type (concat_skip, conv_transpose2d, upsample) trained once per session on bright squares
by the torch backend, its files copied into a job's folder, the Dataset, TrainingJob and Snapshot
rows written by hand (job creation through the API is the training work's)."""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.jobs.test_training_extras import Recorder, make_plan
from tests.segmentation.test_training import SIZE, write_squares

CLASSES = ["background", "square"]
COLOURS = {"background": [0, 0, 0], "square": [220, 40, 40]}
SPEC = {"layers": [
    {"type": "conv2d", "out_channels": 6, "kernel_size": 3, "padding": 1}, {"type": "relu"},
    {"type": "concat_skip", "layers": [
        {"type": "maxpool2d", "kernel_size": 2},
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1}, {"type": "relu"},
        {"type": "conv_transpose2d", "out_channels": 6, "kernel_size": 2, "stride": 2}]},
    {"type": "concat_skip", "layers": [
        {"type": "avgpool2d", "kernel_size": 4}, {"type": "conv2d", "out_channels": 4, "kernel_size": 1},
        {"type": "upsample", "size": "input", "mode": "bilinear"}]},
    {"type": "conv2d", "out_channels": "num_classes", "kernel_size": 1}]}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors on a shared machine
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"dataset": the squares' folder, "job": the trained job's output}: twelve epochs, a snapshot every four."""
    import torch

    from training.torch.run import train

    root = tmp_path_factory.mktemp("segmentation-job")
    dataset = write_squares(root / "dataset")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        plan = make_plan(dataset, root / "job", task="segmentation", input_shape=(3, SIZE, SIZE), classes=CLASSES,
                         network_spec=SPEC, optimizer="adam", learning_rate=0.02, batch_size=8, epochs=12, snapshot_interval=4.0,
                         preprocessing={"width": SIZE, "height": SIZE, "channels": 3, "resize_mode": "squash",
                                        "seed": 0})
        assert train(plan, Recorder()) == "done"
    finally:
        torch.set_num_threads(threads)
    return {"dataset": dataset, "job": root / "job"}


def segmentation_job(owner: Any, trained: dict[str, Path], **dataset_fields: Any) -> Any:
    """A done segmentation job of `owner`'s on the squares, its snapshots those of `trained`."""
    from datasets.models import Dataset
    from jobs.models import TrainingJob

    masks = {split: np.load(trained["dataset"] / f"{split}_masks.npy") for split in ("train", "val")}
    fields = {"owner": owner, "name": "squares", "source": "example", "source_name": "squares", "task": "segmentation",
              "image_width": SIZE, "image_height": SIZE, "channels": 3, "resize_mode": "squash", "val_percent": 25,
              "test_percent": 0, "seed": 0, "status": "ready", "classes": CLASSES, "colormap": COLOURS,
              "split_counts": {"train": len(masks["train"]), "val": len(masks["val"]), "test": 0}, **dataset_fields}
    dataset = Dataset.objects.create(**fields)
    shutil.copytree(trained["dataset"], dataset.folder, dirs_exist_ok=True)
    job = TrainingJob.objects.create(owner=owner, dataset=dataset, name="unet-ish", network="custom",
                                     network_spec=SPEC, status="done")
    shutil.copytree(trained["job"], job.folder, dirs_exist_ok=True)
    for meta in sorted(job.folder.glob("snapshots/epoch_*.json")):
        epoch = json.loads(meta.read_text())["epoch"]
        job.snapshots.create(epoch=epoch, path=f"snapshots/{meta.stem}.safetensors")
    return job


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serving requests answered in this process by the serving worker's own code (the broker and the
    worker process are the edge: tests/serving has them for real), through JSON as the broker carries them."""
    from jobs.inference import classify_on_worker
    from serving import wire

    def ask(name: str, backend: str, weights: str, *, images: np.ndarray, started: float | None = None) -> Any:
        assert name == "jobs.classify"
        return json.loads(json.dumps(classify_on_worker(backend=backend, weights=weights, images=wire.pack(images))))

    monkeypatch.setattr("jobs.inference.client.ask", ask)
