"""A job's log as its watcher reads it: the tail once, then only the lines stored since.

The worker stores each line as a row (jobs.models.LogLine, through jobs.reporting and
jobs.services); the web never writes one. The reader keeps the id of the last line it read, as
the points' cursor does. One reader per watcher, so 200 browsers on a job cost one read per update.
"""
from __future__ import annotations

from jobs.selectors import job_log_lines

TAIL_LINES = 40  # what a stream gets first, as jobs.selectors.job_log_tail gives the page
BURST_LINES = 200  # at most this many of the lines stored between two reads (the page shows a tail)


class LogReader:
    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.cursor = 0  # the id of the last line read

    def tail(self) -> list[str]:
        """The last TAIL_LINES lines; later reads go on from their end."""
        self.cursor = 0
        return self._read(TAIL_LINES)

    def appended(self) -> list[str]:
        """The lines stored since the last read (one query); after a burst of more than BURST_LINES,
        only its last ones."""
        return self._read(BURST_LINES)

    def _read(self, last: int) -> list[str]:
        rows = job_log_lines(job_id=self.job_id, last=last, after=self.cursor)
        if rows:
            self.cursor = rows[-1][0]
        return [line for _, line in rows]
