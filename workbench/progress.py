"""Progress of background work, written to its database row without flooding it."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.db import models


class RowProgress:
    """Writes a 0..1 fraction to `progress` on one row at most every half second (and always at 1)."""

    EVERY = 0.5

    def __init__(self, model: type[models.Model], pk: int, **also: Callable[[], Any]) -> None:
        self.rows = model.objects.filter(pk=pk)
        self.also = also  # more fields to refresh with each write, e.g. updated_at=timezone.now
        self.last = 0.0

    def __call__(self, fraction: float) -> None:
        now = time.monotonic()
        if now - self.last >= self.EVERY or fraction >= 1.0:
            self.last = now
            fields = {name: value() for name, value in self.also.items()}
            self.rows.update(progress=min(max(fraction, 0.0), 1.0), **fields)

    def span(self, start: float, end: float) -> Callable[[float], None]:
        """Progress of one phase, mapped onto [start, end] of the whole."""
        return lambda f: self(start + (end - start) * f)
