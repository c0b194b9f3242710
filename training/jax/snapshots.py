"""Snapshots as safetensors + JSON (never pickle), written on one background thread while training goes on.

epoch_E.safetensors        the weights and batch statistics, by their PyTorch-style names (training.jax.build)
epoch_E.optim.safetensors  the optimizer state's arrays ("optimizer.<i>", in the state's own tree order,
                           their paths kept in the JSON) and a group's pending gradients ("grad.<name>")
epoch_E.json               epoch, step, the optimizer's leaf paths, the loop's state (running loss) and
                           the random state: a run's randomness is a function of (seed, step), so the
                           seed and step are all of it.
jax arrays are immutable: the writer thread reads the very arrays the step returned, with no copy
on the training thread.
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jax
import numpy as np

from training.tensorfile import RawTensor, write_raw_safetensors


class SnapshotWriter:
    """One thread, in order; a snapshot that could not be written fails the run when it ends (or at the next)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jax-snapshot")
        self._pending: list[Future[None]] = []

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)
        if exc[0] is None:
            for future in self._pending:
                future.result()

    def submit(self, work: Callable[[], None]) -> None:
        self._pending = [f for f in self._pending if not f.done() or f.result()]  # raises a failed one
        self._pending.append(self._pool.submit(work))


_DTYPES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "int32": "I32",
           "int16": "I16", "int8": "I8", "uint32": "U32", "uint8": "U8", "bool": "BOOL"}


def save_arrays(arrays: dict[str, Any]) -> Callable[[Path], None]:
    """A writer of `arrays` as a safetensors file, from the arrays' own memory (training.tensorfile:
    safetensors' save_file holds the GIL through its copies and stalls the training thread)."""
    def write(path: Path) -> None:
        raw = {}
        for name, value in arrays.items():
            data = np.ascontiguousarray(jax.device_get(value))
            raw[name] = RawTensor(_DTYPES[str(data.dtype)], tuple(data.shape), data.reshape(-1).view(np.uint8))
        write_raw_safetensors(path, raw)
    return write


def flatten_tree(tree: Any) -> tuple[dict[str, Any], list[str]]:
    """A pytree's array leaves as "optimizer.<i>", and their paths (to check a resume against)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return ({f"optimizer.{i}": leaf for i, (_, leaf) in enumerate(leaves)},
            [jax.tree_util.keystr(path) for path, _ in leaves])


def unflatten_tree(template: Any, arrays: dict[str, np.ndarray], paths: list[str]) -> Any:
    """`template`'s structure (a fresh optimizer state) with the saved leaves in it."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    if [jax.tree_util.keystr(path) for path, _ in leaves] != paths:
        raise ValueError("The snapshot's optimizer state does not fit this run's optimizer.")
    # A scalar (Adam's step count) comes back from safetensors as shape (1,): given its own shape again.
    return jax.tree_util.tree_unflatten(treedef, [
        jax.numpy.asarray(arrays[f"optimizer.{i}"], dtype=leaf.dtype).reshape(leaf.shape)
        for i, (_, leaf) in enumerate(leaves)])
