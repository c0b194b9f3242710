"""Which device a training job runs on. Free of any framework, so it is tested without a GPU.

A worker runs several tasks at once (`--concurrency`). With "auto", each training job takes the
GPU that this worker's running jobs use least, so two jobs on a two-GPU host train on one GPU
each instead of both on cuda:0. A job that names its device gets it, and counts towards its load.
"""
from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from jobs.backends.base import TrainingFailed


class DeviceLeases:
    def __init__(self) -> None:
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextmanager
    def lease(self, requested: str, gpu_count: int) -> Iterator[str]:
        """The device to train on ("cpu" or "cuda:N"), held until the block ends."""
        with self._lock:
            device = self._choose(requested, gpu_count)
            self._held[device] += 1
        try:
            yield device
        finally:
            with self._lock:
                self._held[device] -= 1

    def held(self) -> dict[str, int]:
        with self._lock:
            return {device: count for device, count in self._held.items() if count}

    def _choose(self, requested: str, gpu_count: int) -> str:
        if requested == "auto":
            if gpu_count == 0:
                return "cpu"
            return min((f"cuda:{i}" for i in range(gpu_count)), key=lambda device: self._held[device])
        if requested.startswith("cuda"):
            index = int(requested.partition(":")[2] or 0)
            if index >= gpu_count:
                raise TrainingFailed(f"Device {requested} was asked for, but this worker has {gpu_count} CUDA "
                                     "device(s). Choose 'auto' or 'cpu'.")
            return f"cuda:{index}"
        return requested
