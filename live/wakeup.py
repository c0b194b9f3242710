"""Waking the event streams when a worker reports.

With Redis configured, the worker publishes on a per-job channel and the job's watcher waits on
it: one subscription per job per web process, whatever the number of streams (live.watchers).
The embedded default has no server to publish through, so the watcher polls the database briefly.
The database stays the source of truth either way: a wake-up only says "look again".
"""
from __future__ import annotations

import asyncio
import logging
from functools import lru_cache

from django.conf import settings

log = logging.getLogger(__name__)


def channel(job_id: int) -> str:
    return f"workbench:job:{job_id}"


@lru_cache(maxsize=1)
def _sync_redis():  # type: ignore[no-untyped-def]
    import redis

    return redis.Redis.from_url(settings.WORKBENCH_LIVE_REDIS_URL)


def notify(job_id: int) -> None:
    """Called by the worker after it wrote points or status; never raises."""
    if not settings.WORKBENCH_LIVE_REDIS_URL:
        return
    try:
        _sync_redis().publish(channel(job_id), b"1")
    except Exception:  # a lost wake-up costs latency, never data
        log.warning("could not publish a live update for job %s", job_id, exc_info=True)


class Waiter:
    """An async helper for one job's watcher: `await waiter.wait(timeout)` returns when woken or timed out."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self._pubsub = None

    async def __aenter__(self) -> Waiter:
        if settings.WORKBENCH_LIVE_REDIS_URL:
            import redis.asyncio as aioredis

            self._client = aioredis.Redis.from_url(settings.WORKBENCH_LIVE_REDIS_URL)
            self._pubsub = self._client.pubsub()
            await self._pubsub.subscribe(channel(self.job_id))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._pubsub is not None:
            await self._pubsub.aclose()
            await self._client.aclose()

    async def wait(self, timeout: float) -> None:
        if self._pubsub is None:
            await asyncio.sleep(min(timeout, settings.WORKBENCH_LIVE_POLL_SECONDS))
            return
        message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
        # Drain what else arrived: one look at the database covers them all.
        while message is not None:
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
