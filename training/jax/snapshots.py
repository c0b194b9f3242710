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

import json
import os
import struct
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jax
import numpy as np

from workbench.files import TEMPORARY_MARK, fsync_folder


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


def write_together(files: dict[Path, Callable[[Path], None]], before_replace: Callable[[], None] = lambda: None) -> None:
    """Each file written under a temporary name and fsynced, then all renamed: a kill mid-write leaves no half file."""
    temporaries = {path: path.with_name(f"{path.name}{TEMPORARY_MARK}{uuid.uuid4().hex[:8]}") for path in files}
    try:
        for path, write in files.items():
            write(temporaries[path])
            with open(temporaries[path], "rb+") as handle:
                os.fsync(handle.fileno())
        before_replace()
        for path, temporary in temporaries.items():
            os.replace(temporary, path)
    finally:
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)
    for folder in {path.parent for path in files}:
        fsync_folder(folder)


_DTYPES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "int32": "I32",
           "int16": "I16", "int8": "I8", "uint32": "U32", "uint8": "U8", "bool": "BOOL"}


def save_arrays(arrays: dict[str, Any]) -> Callable[[Path], None]:
    """A writer of `arrays` as a safetensors file (read back with safetensors' own loader).

    Not safetensors' save_file: it copies every array into Python bytes holding the GIL (as
    training/torch/tensorfile.py found), which stalls the training thread beside it; this writes the
    same format (8-byte header length, JSON header padded to 8 bytes, raw bytes in header order)
    from the arrays' own memory, and file writes release the GIL."""
    def write(path: Path) -> None:
        header: dict[str, Any] = {}
        chunks, offset = [], 0
        for name, value in arrays.items():
            data = np.ascontiguousarray(jax.device_get(value))
            header[name] = {"dtype": _DTYPES[str(data.dtype)], "shape": list(data.shape),
                            "data_offsets": [offset, offset + data.nbytes]}
            chunks.append(data.reshape(-1).view(np.uint8))
            offset += data.nbytes
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)
        with open(path, "wb") as file:
            file.write(struct.pack("<Q", len(encoded)))
            file.write(encoded)
            for data in chunks:
                file.write(memoryview(data))
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
