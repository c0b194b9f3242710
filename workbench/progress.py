"""Progress of background work, written to its database row without flooding it."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from workbench import faults
from workbench.leases import Lease


class RowProgress:
    """Writes a 0..1 fraction to `progress` on the leased row at most every half second (and at 1).

    Each write is fenced on the run's attempt; once the run no longer holds its row (taken back,
    or past its time limit) the next call raises LeaseLost, which stops the work there.
    """

    EVERY = 0.5

    def __init__(self, lease: Lease, **also: Callable[[], Any]) -> None:
        self.lease = lease
        self.also = also  # more fields to refresh with each write, e.g. updated_at=timezone.now
        self.last = 0.0

    def __call__(self, fraction: float) -> None:
        self.lease.check()
        if fraction >= 0.5:
            faults.pause(f"progress:{self.lease.label}")
        now = time.monotonic()
        if now - self.last >= self.EVERY or fraction >= 1.0:
            self.last = now
            fields = {name: value() for name, value in self.also.items()}
            self.lease.update(progress=min(max(fraction, 0.0), 1.0), **fields)

    def span(self, start: float, end: float) -> Callable[[float], None]:
        """Progress of one phase, mapped onto [start, end] of the whole."""
        return lambda f: self(start + (end - start) * f)
