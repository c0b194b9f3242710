"""The contract every training backend fulfils. Nothing here imports a framework."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from networks.schema import LAYER_TYPES
from training.augmentation import Augmentation

AUGMENTATION_KEYS = tuple(name for name in Augmentation.__dataclass_fields__ if name != "mean")


class Reporter(Protocol):
    """How a backend tells the world what it is doing. Every call is cheap and never blocks on I/O."""

    def metric(self, *, split: str, name: str, value: float, epoch: float, step: int) -> None: ...

    def progress(self, *, epoch: float, step: int, total_steps: int) -> None: ...

    def snapshot(self, *, epoch: float, path: str, step: int | None = None) -> None:
        """Record a snapshot whose files are complete on disk (`path` relative to the output folder)."""

    def log(self, message: str) -> None: ...

    def using_device(self, name: str, processes: tuple[int, ...] = ()) -> None:
        """Where the run trains; `processes`: the pids it trains through besides this one (a
        several-device run's ranks), counted in its system metrics."""

    def should_stop(self) -> bool:
        """Checked every step: True once abort was asked. It may wait (reports cannot be stored yet)
        or raise (they could not be for too long; this run no longer holds its job): let it propagate."""


class SilentReporter:
    """A reporter that records nothing and never asks to stop: for a run whose reports go elsewhere
    (the other ranks of a several-device run; a benchmark). Subclass it to keep one kind of report."""

    def metric(self, *, split: str, name: str, value: float, epoch: float, step: int) -> None: ...

    def progress(self, *, epoch: float, step: int, total_steps: int) -> None: ...

    def snapshot(self, *, epoch: float, path: str, step: int | None = None) -> None: ...

    def log(self, message: str) -> None: ...

    def using_device(self, name: str, processes: tuple[int, ...] = ()) -> None: ...

    def should_stop(self) -> bool:
        return False


class TrainingFailed(Exception):
    """A failure worded for the user (diverged loss, device missing, bad data)."""


class RunLost(Exception):
    """A part of the run died (a process of a several-device run): the run ends on every device,
    and the job is queued again from its last snapshot, as when its worker is lost."""


@dataclass(frozen=True)
class TrainingPlan:
    """Everything a backend needs to train one job; built by the service, never by a backend."""

    job_id: int
    output_folder: Path
    dataset_folder: Path
    input_shape: tuple[int, int, int]
    classes: list[str]
    network_spec: dict[str, Any]
    epochs: int
    batch_size: int
    optimizer: str
    learning_rate: float
    momentum: float
    weight_decay: float
    lr_policy: str
    lr_params: dict[str, Any]
    seed: int
    device: str
    val_interval: float
    snapshot_interval: float
    resume_from_epoch: float | None = None
    task: str = "classification"  # training.vision_tasks: what the dataset poses, so the loss and metrics
    preprocessing: dict[str, Any] = field(default_factory=dict)
    # training.augmentation's spec as the job stored it (training batches only; its `mean` applies everywhere).
    augmentation: dict[str, Any] = field(default_factory=dict)
    accumulate: int = 1  # batches per optimizer step
    grad_clip: float = 0.0  # the largest gradient norm; 0 is off
    label_smoothing: float = 0.0
    ignore_index: int = 255  # segmentation: the mask value of unlabelled pixels (in neither loss nor metrics)
    amp: str = "off"  # mixed precision: off, bf16, fp16
    # The devices this run holds (workers.leases), one process each; () trains on `device` alone.
    devices: tuple[str, ...] = ()
    compile: bool = False  # torch.compile, eager with a log line when compilation fails
    data_placement: str = ""  # "" chooses (training.torch.data); device, memory or map force one (tests, bench)
    # Fine-tuning: {"weights": absolute path, "copy": [state_dict names], "label": ...} or {} (fresh start).
    pretrained: dict[str, Any] = field(default_factory=dict)
    freeze_epochs: int = 0  # -1: the whole run
    pretrained_lr_mult: float = 1.0


class TrainingBackend(ABC):
    """A way to train and run networks. Configured in settings.TRAINING_BACKENDS by alias.

    Capability flags say what the backend can do, so the product only offers what works. The web
    reads them from the class, so the class's module must not import its framework at import time
    (see torch_backend.py: each call imports the modules that do the work).
    """

    framework: str = ""  # as users name it ("PyTorch")
    framework_package: str = ""  # the distribution whose version GET backends/ reports ("torch")
    tasks: tuple[str, ...] = ()  # the vision tasks it trains (training.vision_tasks)
    supports_resume: bool = False
    export_formats: tuple[str, ...] = ()
    supports_inspect: bool = False
    compress_methods: tuple[str, ...] = ()
    amp_modes: tuple[str, ...] = ("off",)  # mixed precision it offers (AMP_MODES names them all)
    supports_augmentation: bool = False  # applies TrainingPlan.augmentation (else only plain training is offered)
    supports_distributed: bool = False  # trains one job on several devices (TrainingPlan.devices)
    supports_compile: bool = False  # honours TrainingPlan.compile
    # The network layer types it builds (networks.schema.LAYER_TYPES names them all); None: every one.
    layer_types: tuple[str, ...] | None = None
    # The augmentation keys it applies (training.augmentation), given supports_augmentation; None: every one.
    augmentation_keys: tuple[str, ...] | None = None

    def __init__(self, alias: str, options: dict[str, Any]) -> None:
        self.alias = alias
        self.options = options

    @abstractmethod
    def devices(self) -> list[str]:
        """Devices this worker can train on, e.g. ["cpu", "cuda:0"]."""

    @abstractmethod
    def train(self, plan: TrainingPlan, reporter: Reporter) -> str:
        """Train until done or told to stop; return "done" or "aborted"; raise TrainingFailed."""

    @classmethod
    def capabilities(cls) -> dict[str, Any]:
        """Every capability flag, as GET backends/ and the forms read them."""
        return {"resume": cls.supports_resume, "export_formats": list(cls.export_formats),
                "inspect": cls.supports_inspect, "compress_methods": list(cls.compress_methods),
                "amp_modes": list(cls.amp_modes), "augmentation": cls.supports_augmentation,
                "distributed": cls.supports_distributed, "compile": cls.supports_compile,
                "layer_types": list(cls.layer_types if cls.layer_types is not None else LAYER_TYPES),
                "augmentation_keys": list(cls.augmentation_keys if cls.augmentation_keys is not None
                                          else AUGMENTATION_KEYS) if cls.supports_augmentation else []}

    @classmethod
    def unbuildable_layer(cls, spec: object) -> tuple[str, str] | None:
        """The first layer of `spec` (its path, its type) this backend cannot build, or None."""
        if cls.layer_types is None:
            return None
        return _first_layer_outside(spec, cls.layer_types)

    @abstractmethod
    def infer(self, snapshot: Path, images: np.ndarray) -> np.ndarray:
        """The task's outputs for uint8 images (N, C, H, W) preprocessed like the dataset: for
        classification, class probabilities (N, classes). The vision task turns them into answers.

        `snapshot` is a snapshot's weights file or a compressed copy written by `compress`. Called on
        serving workers, many threads at once: keep loaded models warm (training.warm) between calls."""

    def warm_models(self) -> list[dict[str, Any]]:
        """The models this process holds loaded for `infer` (training.warm.WarmCache.describe), for
        the Workers page; [] for a backend that keeps none."""
        return []

    def export(self, snapshot: Path, fmt: str, target: Path) -> dict[str, Any]:
        """Write the snapshot as `fmt` (one of export_formats) to `target`; return facts worth showing,
        such as the largest difference from the original model on sample inputs."""
        raise NotImplementedError(f"The {self.alias} backend cannot export {fmt}.")

    def inspect(self, snapshot: Path, image: np.ndarray) -> dict[str, Any]:
        """Per-layer activations for one preprocessed uint8 (C, H, W) image, and weight statistics."""
        raise NotImplementedError(f"The {self.alias} backend cannot inspect models.")

    def compress(self, snapshot: Path, method: str, params: dict[str, Any], target: Path,
                 plan: TrainingPlan, reporter: Reporter) -> dict[str, Any]:
        """Write a compressed copy of the snapshot (one of compress_methods) to `target`; return sizes and
        validation accuracy before and after. `plan` describes the data for fine-tuning or calibration."""
        raise NotImplementedError(f"The {self.alias} backend cannot compress with {method}.")


def _first_layer_outside(spec: object, types: tuple[str, ...], prefix: str = "") -> tuple[str, str] | None:
    """Depth first, in the spec's own paths ("5.layers.2"), as networks.spec names layers."""
    layers = spec.get("layers") if isinstance(spec, dict) else None
    for index, layer in enumerate(layers if isinstance(layers, list) else []):
        kind = layer.get("type") if isinstance(layer, dict) else None
        if isinstance(kind, str) and kind not in types:
            return f"{prefix}{index}", kind
        if found := _first_layer_outside(layer, types, f"{prefix}{index}.layers."):
            return found
    return None
