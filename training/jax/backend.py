"""The JAX backend as the product sees it: its capabilities, and the calls a worker makes.

This module imports no framework, so the web process can read what the backend can do and offer
only that. Each call imports the jax modules that do the work, on the worker, the first time it is
made: a worker imports jax only when a jax job (or a jax model's inference) runs.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from training.contract import Reporter, TrainingBackend, TrainingPlan


class JaxBackend(TrainingBackend):
    framework = "JAX"
    framework_package = "jax"
    tasks = ("classification",)
    supports_resume = True
    export_formats = ("archive",)  # safetensors weights and a predict.py that needs jax and flax, no torch
    supports_augmentation = True
    # Every key, batched on the device inside the jitted step (training.jax.augment). Named rather
    # than None ("every one") so a key added to training.augmentation is refused until jax builds it.
    augmentation_keys = ("flip", "rot90", "rotate_degrees", "translate", "scale", "crop_padding", "noise_std", "hsv")
    # Classification networks (training.jax.build); conv_transpose2d, upsample and concat_skip are
    # segmentation's, and so is no task this backend trains.
    layer_types = ("conv2d", "linear", "relu", "leaky_relu", "gelu", "elu", "sigmoid", "tanh", "maxpool2d",
                   "avgpool2d", "adaptive_avgpool2d", "batchnorm2d", "batchnorm1d", "dropout", "dropout2d",
                   "flatten", "residual")

    def __init__(self, alias: str, options: dict[str, Any]) -> None:
        super().__init__(alias, options)
        self._cache: Any = None  # the warm models (training.jax.models.ModelCache), made at the first infer
        self._cache_lock = threading.Lock()

    def devices(self) -> list[str]:
        from training.jax.devices import device_names

        return device_names()

    def train(self, plan: TrainingPlan, reporter: Reporter) -> str:
        from training.jax.loop import Run

        return Run(plan, reporter).train()

    def infer(self, snapshot: Path, images: np.ndarray) -> np.ndarray:
        return self._models().infer(snapshot, images)

    def warm_models(self) -> list[dict[str, Any]]:
        return self._cache.warm.describe() if self._cache is not None else []

    def _models(self) -> Any:
        with self._cache_lock:
            if self._cache is None:
                from training.jax.models import ModelCache

                self._cache = ModelCache()
            return self._cache

    def export(self, snapshot: Path, fmt: str, target: Path) -> dict[str, Any]:
        from training.jax.export import export_snapshot

        return export_snapshot(snapshot, fmt, target)
