"""A host's data folder as a cache of the S3 store, bounded by WORKBENCH_CACHE_BYTES.

The unit is an entry: the folder of one dataset, job or pretrained model (`datasets/3`). Its marks
live apart, in `<data folder>/.cache/`, so that removing the folder leaves them to be cleaned:

- `<entry>.used`: its modification time is when this host last used it (least recently used goes first);
- `<entry>.lock`: readers and writers hold it shared while they use the folder (a training job holds
  its dataset for the whole run); eviction takes it exclusively without waiting, so a folder in use
  is never removed under anyone;
- `<entry>.dirty/<token>`: a writer on this host has files there that are not in the store yet (a
  running training job, an ingest); the token goes once what it wrote is published. A writer that
  died leaves its token: that folder is never evicted (its files may be the only copy);
- `<folder>.whole`: `fetch_folder` has every file of that folder.

With `WORKBENCH_STORAGE=local` the data folder is the store: nothing here runs and nothing is evicted.
"""
from __future__ import annotations

import fcntl
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from django.conf import settings

log = logging.getLogger(__name__)

MARKS = ".cache"
_ENTRY_KINDS = ("datasets", "jobs", "pretrained")
_EVICT_EVERY = 5.0  # seconds between two scans of the cache by one process
_last_scan = 0.0
_scan_lock = threading.Lock()


def _root() -> Path:
    from workbench.storage import data_dir

    return data_dir()


def entry_of(path: Path) -> Path | None:
    """The entry folder a path lies in (`<data>/jobs/7` for `<data>/jobs/7/snapshots/x`); None outside any."""
    root = _root()
    try:
        parts = PurePosixPath(Path(path).resolve().relative_to(root)).parts
    except ValueError:
        return None
    if len(parts) < 2 or parts[0] not in _ENTRY_KINDS:
        return None
    return root / parts[0] / parts[1]


def _mark(entry: Path, suffix: str) -> Path:
    marks = _root() / MARKS
    marks.mkdir(exist_ok=True)
    return marks / f"{entry.parent.name}-{entry.name}{suffix}"


def is_mark(path: Path) -> bool:
    return MARKS in Path(path).parts


def _remote() -> bool:
    from workbench.storage import store

    return store().remote


@contextmanager
def _locked(entry: Path, how: int) -> Iterator[bool]:
    with open(_mark(entry, ".lock"), "a+") as handle:
        try:
            fcntl.flock(handle, how)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def using(path: Path) -> Iterator[None]:
    """Hold the entry of `path` against eviction while the block reads or writes it."""
    entry = entry_of(path) if _remote() else None
    if entry is None:
        yield
        return
    with _locked(entry, fcntl.LOCK_SH):
        yield


@contextmanager
def filling(path: Path) -> Iterator[None]:
    """While files are fetched into the entry of `path`: one fetcher per host at a time, never evicted."""
    entry = entry_of(path)
    if entry is None:
        yield
        return
    with open(_mark(entry, ".fill"), "a+") as fill:
        fcntl.flock(fill, fcntl.LOCK_EX)
        try:
            with _locked(entry, fcntl.LOCK_SH):
                yield
        finally:
            fcntl.flock(fill, fcntl.LOCK_UN)
    shrink()


@contextmanager
def working(path: Path) -> Iterator[None]:
    """A writer that puts files into the entry of `path` which are in the store only once published:
    the entry is held, and is never evicted until the block ends without an exception."""
    entry = entry_of(path) if _remote() else None
    if entry is None:
        yield
        return
    tokens = _mark(entry, ".dirty")
    tokens.mkdir(exist_ok=True)
    token = tokens / uuid.uuid4().hex
    token.touch()
    _forget_whole(entry)  # it is changing: a later fetch_folder looks again
    with _locked(entry, fcntl.LOCK_SH):
        yield
    token.unlink(missing_ok=True)  # reached only when the block returned: what it wrote is published
    used(entry)


def used(path: Path) -> None:
    entry = entry_of(path)
    if entry is not None:
        _mark(entry, ".used").touch()


def whole(folder: Path) -> bool:
    return _whole_mark(folder).exists() and Path(folder).is_dir()


def mark_whole(folder: Path) -> None:
    _whole_mark(folder).touch()


def _whole_mark(folder: Path) -> Path:
    entry = entry_of(folder)
    if entry is None:
        raise ValueError(f"{folder} is not a dataset, job or pretrained model folder")
    inner = Path(folder).resolve().relative_to(entry)
    return _mark(entry, "".join(f"-{part}" for part in inner.parts) + ".whole")


def _forget_whole(entry: Path) -> None:
    marks, name = _root() / MARKS, f"{entry.parent.name}-{entry.name}"
    for mark in [marks / f"{name}.whole", *marks.glob(f"{name}-*.whole")]:
        mark.unlink(missing_ok=True)


def folder_bytes(folder: Path) -> int:
    total = 0
    for base, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.stat(os.path.join(base, name)).st_size
            except FileNotFoundError:
                pass
    return total


def entries() -> list[Path]:
    root = _root()
    return [entry for kind in _ENTRY_KINDS if (root / kind).is_dir() for entry in (root / kind).iterdir()
            if entry.is_dir()]


def shrink(budget: int | None = None, *, force: bool = False) -> list[Path]:
    """Evict least recently used entries until the cache holds at most `budget` bytes
    (WORKBENCH_CACHE_BYTES); only clean ones (nothing unpublished) that nobody holds. The removed ones."""
    global _last_scan
    if not _remote():
        return []
    with _scan_lock:
        if not force and time.monotonic() - _last_scan < _EVICT_EVERY:
            return []
        _last_scan = time.monotonic()
    budget = settings.WORKBENCH_CACHE_BYTES if budget is None else budget
    sizes = {entry: folder_bytes(entry) for entry in entries()}
    total = sum(sizes.values())
    removed: list[Path] = []
    if total <= budget:
        return removed

    def last_used(entry: Path) -> float:
        stamp = _mark(entry, ".used")
        return stamp.stat().st_mtime if stamp.exists() else 0.0

    for entry in sorted(sizes, key=last_used):
        if total <= budget:
            break
        dirty = _mark(entry, ".dirty")
        if dirty.is_dir() and any(dirty.iterdir()):
            continue
        with _locked(entry, fcntl.LOCK_EX | fcntl.LOCK_NB) as mine:
            if not mine or (dirty.is_dir() and any(dirty.iterdir())):
                continue
            shutil.rmtree(entry, ignore_errors=True)
            _forget_whole(entry)
        total -= sizes[entry]
        removed.append(entry)
        log.info("cache: evicted %s (%d bytes)", entry, sizes[entry])
    return removed
