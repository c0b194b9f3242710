"""The embedded broker and result store, with atomic writes.

kombu's filesystem transport and Celery's file result backend write a file in place; a reader
polling the folder can open it half-written. For a message that crashes the worker (an empty
JSON document), seen in CI with a 50 ms poll. Here every file is written under a name nobody
reads and renamed into place, which is atomic on one filesystem.
"""
from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from celery.backends.filesystem import FilesystemBackend
from celery.backends.redis import RedisBackend
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

ALIAS = "wbfs"


def write_atomically(path: str | bytes, data: bytes) -> None:
    path = os.fsdecode(path)
    temporary = f"{path}.{uuid.uuid4().hex}.tmp"
    with open(temporary, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        # The same name as kombu's, so its reader picks the message up; the .tmp it never matches.
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        write_atomically(os.path.join(self.data_folder_out, name), str_to_bytes(dumps(payload)))


class Transport(filesystem.Transport):
    Channel = Channel


class AtomicFilesystemBackend(FilesystemBackend):
    """One instance shared by a process's threads (Celery makes one per thread otherwise, each
    checking its folder by writing a file: ~1 ms of every web request under ASGI's thread per request)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.thread_safe = True

    def set(self, key: bytes | str, value: bytes | str) -> None:
        write_atomically(self._filename(key), value if isinstance(value, bytes) else value.encode())

    def mget(self, keys: list[bytes | str]) -> list[bytes | None]:
        """Many answers with one listing of the folder: only the files that are there are opened
        (the serving client asks for every waiting request's answer each millisecond)."""
        keys = list(keys)
        if not keys:
            return []
        present = set(os.listdir(self.path))
        return [self.get(key) if os.path.basename(self._filename(key)) in present else None for key in keys]

    def delete(self, key: bytes | str) -> None:
        # Forgetting an answer that never came (the asker timed out) is not an error.
        try:
            super().delete(key)
        except FileNotFoundError:
            pass


class PolledRedisBackend(RedisBackend):
    """Redis results, read by polling (serving.client reads every waiting answer with one MGET).

    Celery's Redis backend subscribes to each sent task's channel so that `.get()` can block on
    it; nothing here calls `.get()`, so the subscription was a wasted round trip per request and a
    pub/sub connection per web thread. Without it the backend holds no per-thread state: one
    instance serves all threads (redis-py's connection pool is thread-safe)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.thread_safe = True

    def on_task_call(self, producer: Any, task_id: str) -> None:
        pass  # no subscription: answers are polled

    def forget(self, task_id: str) -> None:
        self.delete(self.get_key_for_task(task_id))  # without touching pub/sub


def register() -> None:
    """Make `wbfs://` name this transport, in every process that talks to the broker."""
    TRANSPORT_ALIASES.setdefault(ALIAS, "workbench.broker:Transport")
