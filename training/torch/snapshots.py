"""What a training snapshot holds beside the weights, and how it is written without stopping training:
the optimizer's state as tensors plus JSON (never pickle), every random generator, and a writer
thread with reused buffers."""
from __future__ import annotations

import random
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from workbench.files import write_together

_OPTIMIZER_KEYS = ("param_groups", "scalars")


class SnapshotWriter:
    """Writes snapshots on one background thread, in order, while training goes on.

    The tensors are copied into one of two sets of CPU buffers that are kept and reused: a fresh
    allocation per snapshot costs ten times the copy itself (page faults), all on the training
    thread. A set is reused once the snapshot before it is on disk, so training waits only when
    snapshots come faster than the disk takes them. A snapshot that could not be written fails the job.
    """

    def __init__(self, write: Callable[..., None]) -> None:
        self._write = write
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot")
        self._buffers: tuple[dict[str, torch.Tensor], ...] = ({}, {})
        self._writes: list[Future[None] | None] = [None, None]
        self._first: Future[None] | None = None
        self._turn = 0

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)
        if exc[0] is None:
            for write in (self._first, *self._writes):
                if write is not None:
                    write.result()

    def first(self, work: Callable[[], None]) -> None:
        """Work every snapshot needs done before it (the model's own files), on the writer's thread
        ahead of all snapshots: training does not wait for its fsyncs, and no snapshot is written
        (so none recorded) unless it succeeded."""
        self._first = self._pool.submit(work)

    def submit(self, epoch: float, step: int, weights: dict[str, torch.Tensor],
               optimizer: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        turn, self._turn = self._turn, 1 - self._turn
        previous = self._writes[turn]
        if previous is not None:
            previous.result()
        buffers = self._buffers[turn]
        self._writes[turn] = self._pool.submit(
            self._after_first, epoch, step, _hold(buffers, "weights.", weights), _hold(buffers, "optimizer.", optimizer),
            state)

    def _after_first(self, *args: Any) -> None:
        if self._first is not None:
            self._first.result()  # done by now (one thread, in order); its failure fails this snapshot too
        self._write(*args)

    def write_together(self, files: dict[Path, Callable[[Path], None]],
                       before_replace: Callable[[], None] = lambda: None) -> None:
        """Files that are whole or absent (workbench.files.write_together), one after another on
        this thread: written at once on threads of their own they took half the wall time alone,
        but can take both cores of a 2-core machine from training (measured on the shared VM,
        neither way was clearly faster)."""
        write_together(files, before_replace)


def _hold(buffers: dict[str, torch.Tensor], prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    held = {}
    for name, value in tensors.items():
        buffer = buffers.get(prefix + name)
        if buffer is None or buffer.shape != value.shape or buffer.dtype != value.dtype:
            buffer = buffers[prefix + name] = torch.empty(value.shape, dtype=value.dtype)
        held[name] = buffer.copy_(value.detach())
    return held


def snapshot_meta(epoch: float, step: int, state: dict[str, Any]) -> dict[str, Any]:
    """The snapshot's JSON: where it is in the run, the optimizer's plain part, the loop's state."""
    return {"epoch": epoch, "step": step, "optimizer": {k: v for k, v in state.items() if k in _OPTIMIZER_KEYS},
            **{k: v for k, v in state.items() if k not in _OPTIMIZER_KEYS}}


def rng_state(device: torch.device) -> dict[str, Any]:
    """Every random generator a run may draw from (dropout, anything numpy or Python), as JSON."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()  # type: ignore[misc]
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {"torch": torch.get_rng_state().tolist(),
                             "numpy": [kind, keys.tolist(), position, has_gauss, gauss],
                             "python": [version, list(internal), gauss_next]}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device).tolist()
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8), device)


def flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (the live ones, for safetensors) and plain JSON, never pickle."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = tensor
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}
