"""Fault injection for the recovery tests and bench: pause at a named point so a test can SIGKILL
the worker exactly there. Off unless WORKBENCH_FAULT_PAUSE is set; never set it in production.

WORKBENCH_FAULT_PAUSE="snapshot=30,progress:datasets.dataset=30" sleeps 30 s in the middle of a
snapshot write, and when a dataset ingest first reports half its progress. Each point pauses once
per process.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from functools import cache

log = logging.getLogger(__name__)
_paused: set[str] = set()
_lock = threading.Lock()


@cache  # read once per process: it is checked on every progress report
def _points() -> dict[str, float]:
    raw = os.environ.get("WORKBENCH_FAULT_PAUSE", "")
    points = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, _, seconds = item.partition("=")
        points[name.strip()] = float(seconds or 30)
    return points


def pause(point: str) -> None:
    seconds = _points().get(point)
    if seconds is None:
        return
    with _lock:
        if point in _paused:
            return
        _paused.add(point)
    log.warning("fault injection: pausing %.0f s at %s", seconds, point)
    time.sleep(seconds)
