"""A job's log as its watcher reads it: the tail once, then only the bytes appended since.

The worker appends lines to `log.txt` in the job's folder (jobs.reporting, jobs.services); the
web never writes it. One reader per watcher, so 200 browsers on a job cost one read per update.
"""
from __future__ import annotations

from pathlib import Path

from jobs.selectors import LOG_TAIL_BYTES

TAIL_LINES = 40  # what a stream gets first, as jobs.selectors.job_log_tail gives the page


class LogReader:
    """Whole lines only: a line the worker is still writing waits for the next read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0  # the byte after the last whole line read

    def tail(self) -> list[str]:
        """The last TAIL_LINES lines; later reads go on from their end."""
        self.offset = 0
        return self.appended()[-TAIL_LINES:]

    def appended(self) -> list[str]:
        """The whole lines written since the last read; after a burst of more than LOG_TAIL_BYTES,
        only its last whole lines (the page shows a tail)."""
        try:
            with self.path.open("rb") as handle:
                size = handle.seek(0, 2)
                if size < self.offset:  # a new file in its place: from its start
                    self.offset = 0
                start = max(self.offset, size - LOG_TAIL_BYTES)
                skipped = start > self.offset
                handle.seek(start - 1 if skipped else start)  # the byte before: does `start` begin a line?
                data = handle.read()
        except FileNotFoundError:  # not written yet
            return []
        if skipped:
            cut = data.find(b"\n") + 1
            start, data = start - 1 + cut, data[cut:] if cut else b""
        whole = data.rfind(b"\n") + 1
        if not whole:
            return []
        self.offset = start + whole
        return data[:whole].decode(errors="replace").splitlines()
