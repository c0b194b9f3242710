"""Models kept loaded between requests: an LRU bounded in bytes, shared by a worker's threads.

Framework-free: a backend hands `get` a key and a loader that answers (model, bytes it holds); the
cache keeps the most recently used ones within its capacity. Keys carry the file's identity
(path, modification time, size), so a snapshot written again is loaded again, and a job's newer
snapshot is a key of its own. A model larger than the whole capacity is used once and not kept.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def file_key(path: Path) -> tuple[str, int, int]:
    """A model file's identity: it changes when the file is written again."""
    stat = path.stat()
    return str(path), stat.st_mtime_ns, stat.st_size


@dataclass
class Entry:
    value: Any
    nbytes: int
    name: str
    loaded_at: float = field(default_factory=time.time)
    hits: int = 0


class WarmCache:
    """Loaded models by key, least recently used dropped first once over `capacity` bytes."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.loads = 0  # how many times a loader ran: a warm request adds none
        self._entries: OrderedDict[Hashable, Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, load: Callable[[], tuple[Any, int]], name: str = "") -> Any:
        """The value for `key`, loading it once (concurrent askers of one key wait for that one load)."""
        with self._lock:
            entry = self._hit(key)
            if entry is not None:
                return entry.value
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            with self._lock:
                entry = self._hit(key)
                if entry is not None:
                    return entry.value
            value, nbytes = load()
            with self._lock:
                self.loads += 1
                self._loading.pop(key, None)
                if nbytes <= self.capacity:
                    self._entries[key] = Entry(value, nbytes, name or str(key))
                    self._evict()
            return value

    def _hit(self, key: Hashable) -> Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            entry.hits += 1
        return entry

    def _evict(self) -> None:
        while self._entries and self.nbytes > self.capacity:
            self._entries.popitem(last=False)

    @property
    def nbytes(self) -> int:
        return sum(entry.nbytes for entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def describe(self) -> list[dict[str, Any]]:
        """What it holds, most recently used first: {name, bytes, hits, loaded_at (epoch seconds)}."""
        with self._lock:
            return [{"name": e.name, "bytes": e.nbytes, "hits": e.hits, "loaded_at": e.loaded_at}
                    for e in reversed(self._entries.values())]
