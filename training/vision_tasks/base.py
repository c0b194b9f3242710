"""The vision-task contract (see training.vision_tasks)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class Metric:
    """A live validation metric besides the loss: reported as (split "val", `name`), best by `mode`."""

    name: str  # "accuracy"; the job's `latest`/`best` key is val_<name>
    label: str  # as a chart or a table heads it
    mode: str  # "max" or "min": which value is the best


class VisionTask(ABC):
    """The contract every vision task fulfils. Nothing here imports a framework."""

    name: ClassVar[str]
    title: ClassVar[str]
    # The files of an ingested dataset of this task that training reads ({split}: train, val, test).
    dataset_files: ClassVar[tuple[str, ...]]
    # The built-in networks that fit it (networks.builtin), the first one its default.
    networks: ClassVar[tuple[str, ...]]
    # Live validation metrics besides `loss`; the first one is what a sweep maximises by default.
    metrics: ClassVar[tuple[Metric, ...]]
    # The pages that show its results: template names by role ("dataset", "infer", "evaluation").
    pages: ClassVar[dict[str, str]]

    @property
    def default_network(self) -> str:
        return self.networks[0]

    def best_mode(self, key: str) -> str | None:
        """"max" or "min" for a `best` key (val_loss, val_<metric>); None for keys with no best."""
        if key == "val_loss":
            return "min"
        return next((m.mode for m in self.metrics if key == f"val_{m.name}"), None)

    @abstractmethod
    def head(self, classes: list[str]) -> dict[str, Any]:
        """What a network's last layer must produce for a dataset with these classes."""

    def missing_files(self, folder: Path, splits: tuple[str, ...] = ("train", "val")) -> list[str]:
        """The files of `dataset_files` (for these splits) that `folder` lacks."""
        names = {name.format(split=split) for name in self.dataset_files for split in splits}
        return sorted(name for name in names if not (folder / name).exists())

    def outputs(self, classes: list[str]) -> int:
        """How many values the network's head produces per image (or per pixel) for these classes."""
        return int(self.head(classes)["outputs"])

    @abstractmethod
    def infer_answer(self, outputs: np.ndarray, classes: list[str]) -> dict[str, Any]:
        """The answer to `infer` for one image, from the backend's outputs for it."""

    @abstractmethod
    def evaluation_report(self, outputs: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, Any]:
        """The figures of an evaluation of a split, from the backend's outputs for each image."""
