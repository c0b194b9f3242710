"""The PyTorch backend as the product sees it: its capabilities, and the calls a worker makes.

This module imports no framework, so the web process can read what the backend can do (which
export formats, which compression methods) and offer only that. Each call imports the torch
modules that do the work, on the worker, the first time it is made.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from training.contract import Reporter, TrainingBackend, TrainingPlan


class TorchBackend(TrainingBackend):
    framework = "PyTorch"
    framework_package = "torch"
    tasks = ("classification", "segmentation", "detection")
    supports_resume = True
    export_formats = ("archive", "torchscript", "onnx")
    supports_inspect = True
    compress_methods = ("prune", "quantize_dynamic", "quantize_static")
    supports_augmentation = True
    amp_modes = ("off", "bf16", "fp16")  # fp16 on CUDA only (it needs a GradScaler); bf16 on CPU too
    supports_distributed = True  # DDP: NCCL on GPUs, gloo on CPU processes (training.torch.distributed)
    supports_compile = True

    def __init__(self, alias: str, options: dict[str, Any]) -> None:
        super().__init__(alias, options)
        self._cache: Any = None  # the warm models (training.torch.models.ModelCache), made at the first infer
        self._cache_lock = threading.Lock()

    def devices(self) -> list[str]:
        import torch

        return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]

    def train(self, plan: TrainingPlan, reporter: Reporter) -> str:
        from training.torch.run import train

        return train(plan, reporter, threads=int(self.options.get("threads") or 0))

    def infer(self, snapshot: Path, images: np.ndarray) -> np.ndarray:
        return self._models().infer(snapshot, images)  # a snapshot or a compressed copy: see load_snapshot

    def warm_models(self) -> list[dict[str, Any]]:
        return self._cache.warm.describe() if self._cache is not None else []

    def _models(self) -> Any:
        with self._cache_lock:
            if self._cache is None:
                from training.torch.models import ModelCache

                self._cache = ModelCache()
            return self._cache

    def export(self, snapshot: Path, fmt: str, target: Path) -> dict[str, Any]:
        from training.torch.export import export_snapshot

        return export_snapshot(snapshot, fmt, target)

    def inspect(self, snapshot: Path, image: np.ndarray) -> dict[str, Any]:
        from training.torch.inspect import inspect_snapshot

        return inspect_snapshot(snapshot, image)

    def compress(self, snapshot: Path, method: str, params: dict[str, Any], target: Path,
                 plan: TrainingPlan, reporter: Reporter) -> dict[str, Any]:
        from training.torch.compress import compress_snapshot

        return compress_snapshot(snapshot, method, params, target, plan, reporter)
