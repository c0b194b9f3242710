"""Where a training split's pixels live while a job trains, and how a batch is gathered from them.

- `device`: on a GPU, a split that fits in WORKBENCH_GPU_DATA_FRACTION of the GPU's free memory is
  copied there once, as uint8; batches are then indexed, normalised and augmented on the GPU with
  no host work and no copy per step.
- `memory`: otherwise a split up to 2 GiB is read into host memory once; each batch is gathered
  there and copied to the device.
- `map`: larger splits are read from the memory-mapped array per batch.

Every placement gathers a batch's images in sorted index order (sequential reads on the map): the
same seed gives the same batches, bit for bit, wherever the data lives.

For `map`, and for `memory` batches of PREFETCH_MIN_BYTES or more, a `Prefetcher` gathers the
epoch's next batches on a background thread while the current one trains; on CUDA into pinned
(page-locked) memory, so the copy to the GPU is asynchronous. A smaller batch in memory is gathered
where it is used: 64 digits (49 KiB) take 35 us to gather here, less than handing them between
threads, and a helper thread on a small machine slows a fast training loop beside it (the MLP's
20-epoch run measured 3-10% faster without it, bench/train_overhead.py). `device` needs none: its
batches are one indexing operation on the GPU.
"""
from __future__ import annotations

import queue
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from django.conf import settings

from datasets.ingest.store import open_split
from training.contract import TrainingFailed

PRELOAD_BYTES = 2 * 1024**3
PLACEMENTS = ("device", "memory", "map")
PREFETCH_DEPTH = 3  # batches gathered ahead: enough to hide a slow read, little memory
# A batch in memory this big or bigger is gathered ahead on a thread (64 3x32x32 images, 192 KiB,
# gather in 85 us on the 2-core VM; 64 3x64x64, 768 KiB, in 330 us).
PREFETCH_MIN_BYTES = 256 * 1024


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
    # int64 (N,) class indices; a segmentation split's uint8 (N, H, W) masks or a detection split's float32
    # (N, K, 6) boxes, either placed as `images`
    labels: Any
    where: str = "memory"

    @classmethod
    def open(cls, folder: Path, split: str, device: torch.device | None = None, forced: str = "",
             masks: bool = False, labels: str = "labels") -> Split:
        """`labels`: the array the labels come from: "labels" (one class index per image), "masks" (a
        segmentation split's (N, H, W) uint8 masks, kept as uint8 wherever the images are: the loss takes
        them as int64 on the device; `masks=True` says the same) or "boxes" (a detection split's
        (N, K, 6) float32 boxes, {split}_boxes.npy)."""
        device = device or torch.device("cpu")
        if masks or labels != "labels":
            return cls._open_beside(folder, split, device, forced, "masks" if masks else labels)
        images, labels = open_split(folder, split)
        labels_t = torch.from_numpy(labels.astype(np.int64))
        where = placement(images.nbytes, device, forced)
        if where == "map":
            return cls(images, labels_t, where)
        pixels = torch.from_numpy(np.array(images))  # a writable copy in memory
        if where == "device":
            return cls(pixels.to(device), labels_t.to(device), where)
        return cls(pixels, labels_t, where)

    @classmethod
    def _open_beside(cls, folder: Path, split: str, device: torch.device, forced: str, name: str) -> Split:
        """A split whose labels are an array as long as its images ({split}_{name}.npy), placed with them."""
        images = np.load(folder / f"{split}_images.npy", mmap_mode="r")
        rows = np.load(folder / f"{split}_{name}.npy", mmap_mode="r")
        if len(rows) != len(images):
            raise TrainingFailed(f"{split}_{name}.npy holds {len(rows)} rows for {len(images)} images in {folder}.")
        where = placement(images.nbytes + rows.nbytes, device, forced)
        if where == "map":
            return cls(images, rows, where)  # type: ignore[arg-type]
        pixels, labels = torch.from_numpy(np.array(images)), torch.from_numpy(np.array(rows))
        if where == "device":
            return cls(pixels.to(device), labels.to(device), where)
        return cls(pixels, labels, where)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, index: torch.Tensor, pin: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The images and labels at `index`; `pin` gathers host batches straight into pinned memory (CUDA)."""
        index = index.sort().values  # the order inside a batch does not change its gradient
        return _gather(self.images, index, pin), _gather(self.labels, index, pin)


def _gather(rows: Any, index: torch.Tensor, pin: bool) -> torch.Tensor:
    """rows[index] of a tensor (on any device) or of a numpy memory map, as a tensor."""
    if isinstance(rows, torch.Tensor) and rows.device.type != "cpu":
        return rows[index.to(rows.device)]
    if not pin:
        return rows[index] if isinstance(rows, torch.Tensor) else torch.from_numpy(rows[index.numpy()])
    # A map's own dtype: uint8 pixels and masks, float32 boxes.
    dtype = rows.dtype if isinstance(rows, torch.Tensor) else torch.from_numpy(np.empty(0, rows.dtype)).dtype
    out = torch.empty((len(index), *rows.shape[1:]), dtype=dtype, pin_memory=True)
    if isinstance(rows, torch.Tensor):
        torch.index_select(rows, 0, index, out=out)
    else:
        np.take(rows, index.numpy(), axis=0, out=out.numpy())
    return out


class Prefetcher:
    """The next batches of a host-side split, gathered on a background thread while training runs.

    `plan(indices)` names the batches an epoch will ask for, in order, and starts the thread;
    `get(index)` returns them one by one. A request that is not the next planned batch (or comes
    with no plan: tests, benchmarks) is gathered directly and ends the plan, so what a step
    receives never depends on prefetching. `close()` (or leaving its `with`) ends the thread.
    """

    def __init__(self, split: Split, device: torch.device, depth: int = PREFETCH_DEPTH,
                 min_bytes: int | None = None) -> None:
        self.split, self.depth = split, depth
        self.min_bytes = PREFETCH_MIN_BYTES if min_bytes is None else min_bytes
        self.pin = device.type == "cuda"
        self._expected: deque[torch.Tensor] = deque()
        self._batches: queue.Queue[Any] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def plan(self, indices: list[torch.Tensor]) -> None:
        self.close()
        if not indices or not self.worth_a_thread(max(len(index) for index in indices)):
            return
        self._expected = deque(indices)
        self._batches, self._stop = queue.Queue(maxsize=self.depth), threading.Event()
        self._thread = threading.Thread(target=self._gather, args=(list(indices), self._batches, self._stop),
                                        name="prefetch", daemon=True)
        self._thread.start()

    def worth_a_thread(self, batch_size: int) -> bool:
        """Read from the map (a disk read may wait), or big enough in memory that gathering it
        costs more than handing it over; never on the device."""
        if self.split.where != "memory":
            return self.split.where == "map"
        row = self.split.images[0]
        return batch_size * (row.numel() * row.element_size() + self.split.labels[0].nbytes) >= self.min_bytes

    def get(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not (self._expected and torch.equal(self._expected[0], index)):
            self.close()
            return self.split.batch(index, pin=self.pin and self.split.where != "device")
        self._expected.popleft()
        batch = self._batches.get()
        if isinstance(batch, BaseException):
            self.close()
            raise batch
        return batch

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._thread, self._expected = None, deque()

    def _gather(self, indices: list[torch.Tensor], batches: queue.Queue[Any], stop: threading.Event) -> None:
        try:
            for index in indices:
                if not _put(batches, self.split.batch(index, pin=self.pin), stop):
                    return
        except Exception as exc:  # a read that failed fails the step that needed it
            _put(batches, exc, stop)


def _put(batches: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Wait for room, checking `stop` so that a run that ended never leaves this thread behind."""
    while not stop.is_set():
        try:
            batches.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False
