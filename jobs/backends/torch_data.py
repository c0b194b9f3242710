"""Where a training split's pixels live while a job trains, and how a batch is gathered from them.

- `device`: on a GPU, a split that fits in WORKBENCH_GPU_DATA_FRACTION of the GPU's free memory is
  copied there once, as uint8; batches are then indexed, normalised and augmented on the GPU with
  no host work and no copy per step.
- `memory`: otherwise a split up to 2 GiB is read into host memory once; each batch is gathered
  there and copied to the device.
- `map`: larger splits are read from the memory-mapped array per batch.

Every placement gathers a batch's images in sorted index order (sequential reads on the map): the
same seed gives the same batches, bit for bit, wherever the data lives.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from django.conf import settings

from datasets.ingest.store import open_split

PRELOAD_BYTES = 2 * 1024**3
PLACEMENTS = ("device", "memory", "map")


def placement(nbytes: int, device: torch.device, forced: str = "") -> str:
    """`forced` (tests, benchmarks) wins; else the device when the split fits, else memory or the map."""
    if forced:
        return forced
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if nbytes <= settings.WORKBENCH_GPU_DATA_FRACTION * free:
            return "device"
    return "memory" if nbytes <= PRELOAD_BYTES else "map"


@dataclass
class Split:
    images: Any  # a uint8 tensor (on the device, or in host memory), or the numpy memory map
    labels: torch.Tensor
    where: str = "memory"

    @classmethod
    def open(cls, folder: Path, split: str, device: torch.device | None = None, forced: str = "") -> Split:
        device = device or torch.device("cpu")
        images, labels = open_split(folder, split)
        labels_t = torch.from_numpy(labels.astype(np.int64))
        where = placement(images.nbytes, device, forced)
        if where == "map":
            return cls(images, labels_t, where)
        pixels = torch.from_numpy(np.array(images))  # a writable copy in memory
        if where == "device":
            return cls(pixels.to(device), labels_t.to(device), where)
        return cls(pixels, labels_t, where)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = index.sort().values  # the order inside a batch does not change its gradient
        if isinstance(self.images, torch.Tensor):
            index = index.to(self.images.device)
            return self.images[index], self.labels[index]
        return torch.from_numpy(self.images[index.numpy()]), self.labels[index]
