"""The vision-task contract (see training.vision_tasks)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

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
    # The parts of the training loss a backend reports as train curves of their own besides `loss`
    # (detection: "loss_heatmap", "loss_size", "loss_offset"); the job page plots each.
    loss_parts: ClassVar[tuple[str, ...]] = ()
    # The pages that show its results: template names by role ("dataset", "infer", "evaluation").
    pages: ClassVar[dict[str, str]]
    # What an evaluation scores a split's images against, one row per image ({split}_images.npy).
    truth_file: ClassVar[str] = "{split}_labels.npy"

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

    # Keyword options `infer_answer` takes besides the outputs (detection: "score_threshold").
    infer_options: ClassVar[tuple[str, ...]] = ()

    def answer_to_image(self, answer: dict[str, Any], width: int, height: int,
                        scaled: tuple[int, int], fitted: tuple[int, int] | None = None) -> dict[str, Any]:
        """An `infer_answer` placed on the uploaded image: `width` x `height` is its own size, `scaled`
        the (width, height) it was scaled to before the centre crop or fill made the network's input,
        `fitted` that input's (width, height). An answer about the whole image (classification) stays
        as it is."""
        return answer

    @abstractmethod
    def evaluation_report(self, outputs: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, Any]:
        """The figures of an evaluation of a split, from the backend's outputs for each image."""

    def evaluation(self, classes: list[str], ignore_index: int = 255) -> SplitEvaluation:
        """An evaluation fed a batch at a time. This one keeps every output for `evaluation_report`;
        a task whose outputs are large (one per pixel) tallies as it goes instead."""
        return CollectedEvaluation(self, classes)


class SplitEvaluation(Protocol):
    """The evaluation of a split, fed in order: `add` each batch's outputs and truth, then `report`."""

    def add(self, outputs: np.ndarray, truth: np.ndarray) -> None: ...

    def report(self) -> dict[str, Any]: ...


class CollectedEvaluation:
    def __init__(self, task: VisionTask, classes: list[str]) -> None:
        self.task, self.classes = task, classes
        self.outputs: list[np.ndarray] = []
        self.truth: list[np.ndarray] = []

    def add(self, outputs: np.ndarray, truth: np.ndarray) -> None:
        self.outputs.append(np.asarray(outputs, dtype=np.float32))
        self.truth.append(np.asarray(truth))

    def report(self) -> dict[str, Any]:
        return self.task.evaluation_report(np.concatenate(self.outputs), np.concatenate(self.truth), self.classes)
