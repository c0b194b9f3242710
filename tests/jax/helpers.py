"""A small dataset folder as ingestion writes one (training/torch/data.py reads the same files), and plans on it."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from networks.builtin import builtin_spec
from training.contract import SilentReporter, TrainingPlan


def digits_folder(folder: Path, count: int = 600, channels: int = 1) -> Path:
    """scikit-learn's 8x8 digits, uint8 (N, channels, 8, 8): 3/4 train, 1/4 val, and their mean image.
    With 3 channels each digit is tinted its own colour, so colour shifts have colours to move."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images[:count] * 255 / 16).astype(np.uint8)[:, None]
    if channels == 3:
        tint = np.random.default_rng(0).uniform(0.3, 1.0, (len(images), 3, 1, 1))
        images = np.round(images * tint).astype(np.uint8)
    labels = digits.target[:count].astype(np.int64)
    cut = count * 3 // 4
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "train_images.npy", images[:cut])
    np.save(folder / "train_labels.npy", labels[:cut])
    np.save(folder / "val_images.npy", images[cut:])
    np.save(folder / "val_labels.npy", labels[cut:])
    np.save(folder / "mean.npy", images[:cut].astype(np.float32).mean(axis=0))
    return folder


def plan_on(data: Path, output: Path, network: str = "lenet", channels: int = 1, **changes: Any) -> TrainingPlan:
    shape = (channels, 8, 8)
    plan = TrainingPlan(
        job_id=1, output_folder=output, dataset_folder=data, input_shape=shape, classes=[str(i) for i in range(10)],
        network_spec=builtin_spec(network, shape, 10), epochs=2, batch_size=16, optimizer="adam", learning_rate=0.002,
        momentum=0.9, weight_decay=1e-4, lr_policy="step", lr_params={"step_size": 1, "gamma": 0.5}, seed=7,
        device="cpu", val_interval=1.0, snapshot_interval=1.0)
    return replace(plan, **changes)


class Recorder(SilentReporter):
    """Keeps what a run reports; asks to stop (abort) at the check before step `stop_after` + 1."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.metrics: list[tuple[str, str, float, float]] = []
        self.snapshots: list[tuple[float, str]] = []
        self.logs: list[str] = []
        self.steps = 0
        self.checks = 0
        self.stop_after = stop_after

    def metric(self, *, split: str, name: str, value: float, epoch: float, step: int) -> None:
        self.metrics.append((split, name, value, epoch))

    def progress(self, *, epoch: float, step: int, total_steps: int) -> None:
        self.steps = step

    def snapshot(self, *, epoch: float, path: str, step: int | None = None) -> None:
        self.snapshots.append((epoch, path))

    def log(self, message: str) -> None:
        self.logs.append(message)

    def should_stop(self) -> bool:
        self.checks += 1
        return self.stop_after is not None and self.checks > self.stop_after

    def values(self, split: str, name: str) -> list[float]:
        return [value for s, n, value, _ in self.metrics if (s, n) == (split, name)]
