"""Trained models as the worker loads them: a snapshot (or a compressed copy) from its own files,
the warm cache of loaded ones for serving, and the evaluation loop validation and results share."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from django.conf import settings
from safetensors.torch import load_file

from training.augmentation import augmentation_from_stored
from training.contract import TrainingPlan
from training.torch.build import build_model
from training.torch.data import Split
from training.torch.detection import decode
from training.torch.quantized import load_quantized
from training.vision_tasks import DEFAULT_TASK, vision_task
from training.warm import WarmCache, file_key


class ModelCache:
    """The models a serving worker answers with, kept loaded (training.warm): a warm request skips
    the load. Bounded by WORKBENCH_SERVING_CACHE_MB; on WORKBENCH_SERVING_DEVICE."""

    def __init__(self, capacity: int | None = None, device: str | None = None) -> None:
        self.warm = WarmCache(capacity if capacity is not None else settings.WORKBENCH_SERVING_CACHE_MB * 1024**2)
        self.device = torch.device(device or settings.WORKBENCH_SERVING_DEVICE)

    def infer(self, weights: Path, images: np.ndarray) -> np.ndarray:
        """The task's outputs for uint8 images (N, C, H, W): class probabilities (per image, or per
        pixel), or detection's (N, 100, 6) boxes."""
        model, mean, meta = self._warm(weights)
        with torch.inference_mode():
            x = (torch.from_numpy(np.asarray(images)).to(self.device).float() - mean) / 255.0
            return task_outputs(meta, model(x), (x.shape[2], x.shape[3])).cpu().numpy()

    def get(self, weights: Path) -> tuple[Any, torch.Tensor]:
        model, mean, _ = self._warm(weights)
        return model, mean

    def _warm(self, weights: Path) -> tuple[Any, torch.Tensor, dict[str, Any]]:
        """The model, its mean and its model.json (which says what its raw output becomes)."""
        return self.warm.get(file_key(weights), lambda: self._load(weights), name=_model_name(weights))  # type: ignore[no-any-return]

    def _load(self, weights: Path) -> tuple[tuple[Any, torch.Tensor, dict[str, Any]], int]:
        model, mean = load_snapshot(weights)
        model, mean = model.to(self.device), mean.to(self.device)
        meta = json.loads((model_folder(weights) / "model.json").read_text())
        return (model, mean, meta), mean.nbytes + sum(_nbytes(t) for t in model.state_dict().values())


def _nbytes(value: Any) -> int:
    return int(value.numel() * value.element_size()) if isinstance(value, torch.Tensor) else 0


def _model_name(weights: Path) -> str:
    """How the Workers page names a warm model: its path from the jobs folder (jobs/12/snapshots/epoch_3.safetensors,
    jobs/12/compressed/4/model.pt), which the page reads the job from (workers.selectors); else its last parts."""
    parts = weights.parts
    starts = [i for i in range(len(parts) - 2) if parts[i] == "jobs" and parts[i + 1].isdigit()]
    if starts:
        return "/".join(parts[starts[-1]:])
    return "/".join(parts[-4:]) if len(parts) >= 4 else str(weights)


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
    model = build_model(meta["network_spec"], tuple(meta["input_shape"]), head_outputs(meta), meta.get("task"))
    model.load_state_dict(load_file(weights))
    return model.eval(), mean


def head_outputs(meta: dict[str, Any]) -> int:
    """How many values the network's head gives per image or cell, from model.json: the task's
    (training.vision_tasks: one per class; detection's classes + 4)."""
    return vision_task(meta.get("task") or DEFAULT_TASK).outputs(meta["classes"])


def task_outputs(meta: dict[str, Any], raw: torch.Tensor, input_size: tuple[int, int]) -> torch.Tensor:
    """What the backend answers for the network's raw output: class probabilities (per image or per
    pixel), or detection's (N, 100, 6) boxes in the input's pixels."""
    if meta.get("task") == "detection":
        return decode(raw, len(meta["classes"]), input_size)
    return torch.softmax(raw, dim=1)


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
