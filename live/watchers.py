"""One watcher per job per web process, shared by all the event streams of that job.

Each stream used to poll the database on its own: 200 browsers on one job meant 200 reads per
wake-up and, on PostgreSQL, 200 connections held. Now the streams of a job subscribe to one
`JobWatcher`. It wakes on the worker's pub/sub message (or polls, on the embedded default),
reads the job's status, then the points after the highest id it has seen, then the log lines
appended since its last read, and hands them to every subscriber. It holds no database connection between reads, starts with its first
subscriber and stops when the last one leaves. It only reads: taking back a job whose worker
died is the workers' reaper's work (workbench.recovery), never a page's or a stream's.
"""
from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import json
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from django.db.models import Max

from jobs import selectors
from jobs.models import MetricPoint, TrainingJob
from live.logs import TAIL_LINES, LogReader
from live.wakeup import Waiter

BATCH = 1000
BACKLOGS_KEPT = 8
QUEUE_LIMIT = 100  # updates waiting for one stream (10 s of a job's reports): past it, the stream is closed
RECENT_UPDATES = 300  # kept with their encoded points (30 s of a job's reports): a joining stream's backlog


class Lagging(Exception):
    """The stream's client reads slower than its job reports. It is closed rather than buffered
    without end: the browser comes back by itself with Last-Event-ID and reads on from the database."""
WAKE_EVERY_SECONDS = 15.0  # with Redis, look anyway this often: a lost wake-up costs latency only


def sse(data: dict[str, Any], event: str, event_id: int | None = None) -> str:
    """One server-sent event."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@dataclass(frozen=True)
class Update:
    """One read: the job's status, then the points written after the previous read's, then the
    log lines appended since (`log`); `tail` is the log's last lines as of this read, for a stream
    that joins here.

    Its events are encoded once, on first use, and the same text goes to every stream: 200
    browsers on a job cost one encoding per update, not 200.
    """

    status: dict[str, Any]
    points: list[dict[str, Any]]
    position: int  # the highest point id read so far
    complete: bool  # every point written before `status` was read is in this update or an earlier one
    error: BaseException | None = None
    status_version: int = 0  # counts status changes (the clock aside): a stream sends a version once
    log: tuple[str, ...] = ()
    tail: tuple[str, ...] = ()
    since: int = 0  # the position this read started from: its points are the ones after it

    @property
    def ended(self) -> bool:
        return self.complete and self.status["status"] not in TrainingJob.ACTIVE

    @cached_property
    def metric_events(self) -> str:
        return "".join(sse(point, "metric", point["id"]) for point in self.points)

    def metric_events_after(self, cursor: int) -> str:
        """The shared text; a cursor inside this update's points (a reconnect) skips what it had."""
        if not self.points or self.points[0]["id"] > cursor:
            return self.metric_events
        return "".join(sse(point, "metric", point["id"]) for point in self.points if point["id"] > cursor)

    @cached_property
    def status_event(self) -> str:
        return sse(self.status, "status")

    @cached_property
    def log_event(self) -> str:
        return sse({"lines": list(self.log)}, "log")

    @cached_property
    def tail_event(self) -> str:
        """A stream's first log event: the lines before (`tail`: the page replaces what it shows)."""
        return sse({"lines": list(self.tail), "tail": True}, "log")

    @cached_property
    def end_event(self) -> str:
        return sse({"status": self.status["status"]}, "end")


def comparable(status: dict[str, Any] | None) -> dict[str, Any] | None:
    """A status without its clock: a change in elapsed time alone is no status change."""
    return None if status is None else {k: v for k, v in status.items() if k != "elapsed_seconds"}


def _restarted(before: dict[str, Any], now: dict[str, Any]) -> bool:
    return now.get("attempt") != before.get("attempt") or (now.get("status") == "queued" != before.get("status"))


# --- the synchronous reads (each closes its connection: a stream is one long request) ---------

def _status(job_id: int) -> dict[str, Any]:
    return selectors.job_status_dict(job=TrainingJob.objects.get(pk=job_id))


def read_start(job_id: int, log: LogReader) -> tuple[dict[str, Any], int, list[str]]:
    """The status, then the highest point id, then the log's tail: where the watcher starts."""
    try:
        status = _status(job_id)
        top = MetricPoint.objects.filter(job_id=job_id).aggregate(top=Max("pk"))["top"] or 0
        return status, top, log.tail()
    finally:
        close_old_connections()


def _points(job_id: int, after: int, upto: int | None = None) -> list[dict[str, Any]]:
    rows = MetricPoint.objects.filter(job_id=job_id, pk__gt=after)
    if upto is not None:
        rows = rows.filter(pk__lte=upto)
    return list(rows.order_by("pk").values(*selectors.METRIC_FIELDS)[:BATCH])


def read(job_id: int, after: int, log: LogReader) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """The status first, then the points and the log: the worker commits its last points and
    writes its last lines before it ends the job, so a status that says "ended" comes with them all."""
    try:
        status = _status(job_id)
        points = _points(job_id, after)
        return status, points, log.appended()
    finally:
        close_old_connections()


def read_backlog(job_id: int, after: int, upto: int) -> list[dict[str, Any]]:
    """Points from a stream's cursor up to where the watcher was when it joined."""
    try:
        return _points(job_id, after, upto)
    finally:
        close_old_connections()


@dataclass(frozen=True)
class Backlog:
    """A part of a backlog, encoded: the events and the id of its last point."""

    text: str
    last: int


# --- the watcher --------------------------------------------------------------------------------

class JobWatcher:
    def __init__(self, key: tuple[asyncio.AbstractEventLoop, int]) -> None:
        self.key, self.job_id = key, key[1]
        self.latest: Update | None = None  # the last read: where a joining stream starts
        self.ready = asyncio.Event()  # set once `latest` is there
        self.queues: set[asyncio.Queue[Update]] = set()
        self.lagging: set[asyncio.Queue[Update]] = set()  # missed an update: must start again
        self.users = 0
        self.log = LogReader(self.job_id)
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        # The updates with points since the watcher started (the last RECENT_UPDATES of them): the
        # browsers that come back after a restart join over a second or two while points arrive, and
        # this is their backlog from memory, encoded already, after one shared read of what came before.
        self.recent: deque[Update] = deque(maxlen=RECENT_UPDATES)
        # Backlog parts by (after, upto): the browsers that open a job's page at one moment ask
        # for the same one, and one read and one encoding serve them all.
        self.backlogs: OrderedDict[tuple[int, int], asyncio.Future[Backlog]] = OrderedDict()
        # A context of its own, not the first stream's: that request's thread for sync_to_async
        # goes away when it ends, and the watcher may outlive it.
        self.task = asyncio.get_running_loop().create_task(self._run(), context=contextvars.Context())

    def forget(self) -> None:
        """Streams that join from now on start a new watcher."""
        if _watchers.get(self.key) is self:
            del _watchers[self.key]

    def stop(self) -> None:
        self.forget()
        self.task.cancel()

    async def _run(self) -> None:
        try:
            async with Waiter(self.job_id) as waiter:
                await self._watch(waiter)
        except Exception as exc:  # every subscriber raises it (as one stream's read did before)
            self.forget()
            self._publish(Update({}, [], 0, True, exc), always=True)

    async def _watch(self, waiter: Waiter) -> None:
        status, position, lines = await sync_to_async(read_start)(self.job_id, self.log)
        self.tail.extend(lines)
        self._publish(Update(status, [], position, True, tail=tuple(self.tail)), always=True)
        while True:
            if self.latest.complete:  # after a full batch, read on at once
                await waiter.wait(timeout=WAKE_EVERY_SECONDS)
            status, points, lines = await sync_to_async(read)(self.job_id, self.latest.position, self.log)
            position = points[-1]["id"] if points else self.latest.position
            self.tail.extend(lines)
            self._publish(Update(status, points, position, len(points) < BATCH, log=tuple(lines),
                                 tail=tuple(self.tail) if lines else self.latest.tail, since=self.latest.position))

    async def backlog(self, after: int, upto: int) -> Backlog:
        key = (after, upto)
        part = self.backlogs.get(key)
        if part is None:
            part = self.backlogs[key] = asyncio.ensure_future(self._read_backlog(after, upto))
            while len(self.backlogs) > BACKLOGS_KEPT:
                self.backlogs.popitem(last=False)
        return await asyncio.shield(part)  # one stream that leaves does not cancel the others' read

    async def _read_backlog(self, after: int, upto: int) -> Backlog:
        try:
            points = await sync_to_async(read_backlog)(self.job_id, after, upto)
        except Exception:
            self.backlogs.pop((after, upto), None)  # the next stream reads again
            raise
        return Backlog("".join(sse(point, "metric", point["id"]) for point in points),
                       points[-1]["id"] if points else upto)

    def _publish(self, update: Update, always: bool = False) -> None:
        previous, self.latest = self.latest, update
        changed = previous is None or comparable(update.status) != comparable(previous.status)
        if previous is not None:
            self.latest = update = dataclasses.replace(update, status_version=previous.status_version + changed)
        if previous is not None and _restarted(previous.status, update.status):
            # A taken-back job's points after its snapshot are deleted (computed again): what the
            # watcher holds of them must not reach a stream that joins now.
            self.recent.clear()
            self.backlogs.clear()
        if update.points:
            self.recent.append(update)
        self.ready.set()
        # A read that brings nothing new wakes nobody: 200 streams need not look 10 times a second.
        if always or update.points or update.log or update.ended or changed:
            for queue in self.queues:
                try:
                    queue.put_nowait(update)
                except asyncio.QueueFull:
                    self.lagging.add(queue)


_watchers: dict[tuple[asyncio.AbstractEventLoop, int], JobWatcher] = {}


# --- what a stream sees -------------------------------------------------------------------------

class Feed:
    """One stream's subscription: `first` (status and position when it joined), then `next()`."""

    def __init__(self, watcher: JobWatcher, first: Update, queue: asyncio.Queue[Update]) -> None:
        self.job_id, self.first, self._queue, self._watcher = watcher.job_id, first, queue, watcher
        self.recent = tuple(watcher.recent)  # taken with `first`: no update falls between them

    async def backlog(self, after: int) -> AsyncIterator[Backlog]:
        """The points after this stream's cursor that the watcher had passed when it joined, encoded:
        from the database up to where the watcher's memory starts (one read for every stream with
        the same cursor, whenever it joins), then from its recent updates."""
        floor = self.recent[0].since if self.recent else self.first.position
        while after < floor:
            part = await self._watcher.backlog(after, floor)
            if not part.text:
                break
            yield part
            after = part.last
        text = "".join(update.metric_events_after(after) for update in self.recent if update.position > after)
        if text:
            yield Backlog(text, self.first.position)

    async def next(self, timeout: float) -> Update | None:
        """The next shared update, or None after `timeout` seconds without one; Lagging once one was missed."""
        if self._queue in self._watcher.lagging:
            raise Lagging
        try:
            update = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        if update.error is not None:
            raise update.error
        return update


@asynccontextmanager
async def subscribe(job_id: int) -> AsyncIterator[Feed]:
    key = (asyncio.get_running_loop(), job_id)
    watcher = _watchers.get(key)
    if watcher is None:
        watcher = _watchers[key] = JobWatcher(key)
    watcher.users += 1
    queue: asyncio.Queue[Update] = asyncio.Queue(maxsize=QUEUE_LIMIT)
    try:
        await watcher.ready.wait()
        # No await between reading `latest` and joining the queue: no update falls between them.
        first = watcher.latest
        watcher.queues.add(queue)
        if first.error is not None:
            raise first.error
        yield Feed(watcher, first, queue)  # its points are behind the backlog: a stream skips them
    finally:
        watcher.queues.discard(queue)
        watcher.lagging.discard(queue)
        watcher.users -= 1
        if watcher.users == 0:
            watcher.stop()
