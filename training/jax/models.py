"""Trained jax models as a worker loads them: from a snapshot's own files, kept warm for serving."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from django.conf import settings
from flax import nnx
from safetensors.numpy import load_file

from training.augmentation import augmentation_from_stored
from training.contract import TrainingPlan
from training.jax.build import build_model, load_weights
from training.warm import WarmCache, file_key


def model_metadata(plan: TrainingPlan) -> dict[str, Any]:
    """model.json, as the torch backend writes it (training/torch/models.py), and which backend wrote it."""
    mean = augmentation_from_stored(plan.augmentation).mean
    return {"task": plan.task, "network_spec": plan.network_spec, "input_shape": list(plan.input_shape),
            "classes": plan.classes, "backend": "jax",
            "preprocessing": {**plan.preprocessing, "mean": mean, "mean_file": "mean.safetensors", "scale": 1 / 255}}


def mean_to_subtract(mode: str, mean_image: np.ndarray) -> np.ndarray:
    """What the job subtracts from every (C, H, W) image by its `mean` setting (torch's mean_to_subtract)."""
    if mode == "pixel":
        return np.broadcast_to(mean_image.mean(axis=(1, 2), keepdims=True), mean_image.shape).astype(np.float32)
    if mode == "none":
        return np.zeros_like(mean_image, dtype=np.float32)
    return mean_image.astype(np.float32)


class Loaded:
    """A model in eval mode, its mean, and its jitted forward (softmax probabilities)."""

    def __init__(self, weights: Path) -> None:
        folder = weights.parent.parent
        meta = json.loads((folder / "model.json").read_text())
        self.mean = jnp.asarray(load_file(str(folder / "mean.safetensors"))["mean"])
        model = build_model(meta["network_spec"], tuple(meta["input_shape"]), len(meta["classes"]), task=meta.get("task"))
        load_weights(model, load_file(str(weights)))
        graphdef, state = nnx.split(model)
        self.nbytes = int(sum(np.asarray(v).nbytes for v in jax.tree.leaves(state))) + int(self.mean.nbytes)

        @jax.jit
        def forward(state: Any, mean: jax.Array, pixels: jax.Array) -> jax.Array:
            net = nnx.merge(graphdef, state)
            return jax.nn.softmax(net((pixels.astype(jnp.float32) - mean) / 255.0, False, jax.random.key(0)), axis=1)

        self._run = lambda pixels: forward(state, self.mean, pixels)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        # A batch is padded up to a power of two: jit compiles once per shape, and serving batches
        # come in every size; a few shapes are compiled, not one per size.
        images = np.asarray(images)
        count = len(images)
        size = 1 << max(count - 1, 0).bit_length()
        if size != count:
            images = np.concatenate([images, np.zeros((size - count, *images.shape[1:]), images.dtype)])
        return np.asarray(self._run(jnp.asarray(images)))[:count]


class ModelCache:
    """The models a serving worker answers with, kept loaded (training.warm), bounded by WORKBENCH_SERVING_CACHE_MB.
    A batch size not seen before compiles once more (jit caches a compiled forward per shape)."""

    def __init__(self, capacity: int | None = None) -> None:
        self.warm = WarmCache(capacity if capacity is not None else settings.WORKBENCH_SERVING_CACHE_MB * 1024**2)

    def infer(self, weights: Path, images: np.ndarray) -> np.ndarray:
        return self.get(weights)(images)  # type: ignore[no-any-return]

    def get(self, weights: Path) -> Loaded:
        return self.warm.get(file_key(weights), lambda: self._load(weights), name=_model_name(weights))  # type: ignore[no-any-return]

    def _load(self, weights: Path) -> tuple[Loaded, int]:
        loaded = Loaded(weights)
        return loaded, loaded.nbytes


def _model_name(weights: Path) -> str:
    parts = weights.parts
    starts = [i for i in range(len(parts) - 2) if parts[i] == "jobs" and parts[i + 1].isdigit()]
    return "/".join(parts[starts[-1]:]) if starts else "/".join(parts[-4:])
