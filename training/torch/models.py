"""Trained models as the worker loads them: a snapshot (or a compressed copy) from its own files,
a small cache of loaded ones for classify, and the evaluation loop validation and results share."""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from training.augmentation import augmentation_from_stored
from training.contract import TrainingPlan
from training.torch.build import build_model
from training.torch.data import Split
from training.torch.quantized import load_quantized

_MODEL_CACHE = 8


class ModelCache:
    """The last few models a worker classified with, kept loaded: a warm classify skips the load."""

    def __init__(self, size: int = _MODEL_CACHE) -> None:
        self.size = size
        self._models: OrderedDict[tuple[str, float], tuple[Any, torch.Tensor]] = OrderedDict()
        self._lock = threading.Lock()

    def infer(self, weights: Path, images: np.ndarray) -> np.ndarray:
        model, mean = self.get(weights)
        with torch.inference_mode():
            x = (torch.from_numpy(np.array(images)).float() - mean) / 255.0
            return torch.softmax(model(x), dim=1).numpy()

    def get(self, weights: Path) -> tuple[Any, torch.Tensor]:
        key = (str(weights), weights.stat().st_mtime)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            loaded = load_snapshot(weights)
            self._models[key] = loaded
            while len(self._models) > self.size:
                self._models.popitem(last=False)
            return loaded


def model_metadata(plan: TrainingPlan) -> dict[str, Any]:
    # mean.safetensors holds what is subtracted (the mean image, its per-channel means, or zeros):
    # every reader subtracts it as it is, so inference and export follow the job's `mean` choice.
    mean = augmentation_from_stored(plan.augmentation).mean
    return {"task": plan.task, "network_spec": plan.network_spec, "input_shape": list(plan.input_shape), "classes": plan.classes,
            "preprocessing": {**plan.preprocessing, "mean": mean, "mean_file": "mean.safetensors", "scale": 1 / 255}}


def model_folder(weights: Path) -> Path:
    """Where model.json and mean.safetensors are: beside a compressed model, one folder above a snapshot."""
    return weights.parent if (weights.parent / "model.json").exists() else weights.parent.parent


def load_snapshot(weights: Path) -> tuple[Any, torch.Tensor]:
    """A model in eval mode and its mean image, from its own files alone (no pickle).

    `weights` is a snapshot (model.json and mean.safetensors one folder up) or a compressed
    copy (its own model.json and mean.safetensors beside it; quantized ones are TorchScript).
    """
    folder = model_folder(weights)
    mean = load_file(folder / "mean.safetensors")["mean"]
    if weights.suffix == ".pt":
        return load_quantized(weights), mean
    meta = json.loads((folder / "model.json").read_text())
    model = build_model(meta["network_spec"], tuple(meta["input_shape"]), len(meta["classes"]))
    model.load_state_dict(load_file(weights))
    return model.eval(), mean


def evaluate(model: torch.nn.Module, split: Split, mean: torch.Tensor, device: torch.device,
             batch_size: int) -> tuple[float, float]:
    model.eval()
    total_loss, correct = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(split), batch_size):
            x, y = split.batch(torch.arange(start, min(start + batch_size, len(split))))
            logits = model((x.to(device).float() - mean) / 255.0)
            y = y.to(device)
            total_loss += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum())
    return total_loss / len(split), correct / len(split)
