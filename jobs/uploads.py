"""Snapshots into the store, off the training thread, recorded only once they are whole there.

With `WORKBENCH_STORAGE=local` a snapshot is whole once its files are renamed into place, and is
recorded at once. With an S3 store a worker on another host must be able to resume from any snapshot
the database lists, so a snapshot's files (and the job's model.json and mean.safetensors, once) go
up first, on a thread of their own, and only then is the snapshot handed to the reporter's writer.
A store that stops answering pauses the uploads, not training: the log says why it waits, and the
uploads retry for WORKBENCH_STORE_RETRY_SECONDS before the run fails, saying so.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench import cache
from workbench.storage import MODEL_FILES, StoreUnavailable, retrying, store

_DONE = object()
SNAPSHOT_SUFFIXES = (".optim.safetensors", ".json", ".safetensors")  # the weights last: the others are there when it is


def snapshot_paths(folder: Path, path: str) -> list[Path]:
    """The files of the snapshot whose weights are `path` (relative to the job's folder)."""
    stem = str(folder / path).removesuffix(".safetensors")
    return [Path(stem + suffix) for suffix in SNAPSHOT_SUFFIXES]


def snapshot_files(folder: Path, path: str) -> list[Path]:
    """Those of them this host has."""
    return [p for p in snapshot_paths(folder, path) if p.exists()]


class SnapshotUploads:
    """Put each reported snapshot into the store, then pass it on with `recorded(event)`."""

    def __init__(self, folder: Path, recorded: Callable[[Any], None], *, said: Callable[[str], None],
                 failed: Callable[[str], None], lost: threading.Event) -> None:
        self.folder, self.recorded, self.said, self.failed, self.lost = folder, recorded, said, failed, lost
        self.remote = store().remote
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"uploads-{folder.name}", daemon=True)
        self._model_files_sent = False
        self._working = cache.working(folder)

    def start(self) -> None:
        if self.remote:
            self._working.__enter__()  # this host's copy holds what the store does not have yet
            self._thread.start()

    def put(self, event: Any) -> None:
        if self.remote:
            self._queue.put(event)
        else:
            self.recorded(event)

    def close(self) -> None:
        """Wait until every snapshot reported so far is in the store (or could not be put there)."""
        if not self.remote or not self._thread.is_alive():
            return
        self._queue.put(_DONE)
        self._thread.join()

    def _run(self) -> None:
        clean = True
        while (event := self._queue.get()) is not _DONE:
            if not clean or self.lost.is_set():
                continue  # a failed upload ends the run; a lost run writes nothing more
            try:
                retrying(lambda: self._upload(event[2]), said=self.said, stop=self.lost.is_set)
            except StoreUnavailable as exc:
                clean = False
                self.failed(f"Training stopped: a snapshot could not be put into the store ({exc}). "
                            "Check the store, then resume the job.")
                continue
            except FileNotFoundError as exc:  # its files went: nothing to record
                clean = False
                self.failed(f"Training stopped: a snapshot's file is missing ({exc}).")
                continue
            self.recorded(event)
        if clean and not self.lost.is_set():
            self._working.__exit__(None, None, None)

    def _upload(self, path: str) -> None:
        files = snapshot_files(self.folder, path)
        if not files:
            raise FileNotFoundError(self.folder / path)
        if not self._model_files_sent:
            store().publish(*[self.folder / name for name in MODEL_FILES if (self.folder / name).exists()])
            self._model_files_sent = True
        store().publish(*files)
