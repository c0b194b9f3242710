"""The shared job watcher behind the event streams, driven in one asyncio loop (no server, no worker)."""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import close_old_connections
from django.utils import timezone

from datasets.models import Dataset
from jobs import selectors
from jobs.models import LogLine, MetricPoint, TrainingJob
from live import events, watchers
from live.wakeup import Waiter

pytestmark = pytest.mark.django_db(transaction=True)


def run(coroutine):  # type: ignore[no-untyped-def]
    """asyncio.run on a thread of its own: Playwright's sync API, used by the browser tests in the
    same session, leaves an event loop running on the main thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()



@pytest.fixture
def job(alice):  # type: ignore[no-untyped-def]
    dataset = Dataset.objects.create(owner=alice, name="digits", source="example", source_name="x", image_width=28,
                                     image_height=28, channels=1, resize_mode="squash", val_percent=20,
                                     test_percent=0, seed=0, status="ready", classes=[str(i) for i in range(10)])
    job = TrainingJob.objects.create(owner=alice, dataset=dataset, name="live", network="lenet", network_spec={},
                                     status=TrainingJob.Status.RUNNING, heartbeat_at=timezone.now())
    add_points(job.pk, range(3))
    return job


@pytest.fixture(autouse=True)
def embedded(settings):  # type: ignore[no-untyped-def]
    settings.WORKBENCH_LIVE_REDIS_URL = ""
    settings.WORKBENCH_LIVE_POLL_SECONDS = 0.01


def add_points(job_id: int, steps: range | list[int]) -> None:
    MetricPoint.objects.bulk_create([MetricPoint(job_id=job_id, split="train", name="loss", epoch=s / 10, step=s,
                                                 value=1 / (s + 1), time=time.time()) for s in steps])
    close_old_connections()


def finish(job_id: int) -> None:
    TrainingJob.objects.filter(pk=job_id).update(status=TrainingJob.Status.DONE)
    close_old_connections()


def stored_ids(job_id: int) -> list[int]:
    return list(MetricPoint.objects.filter(job_id=job_id).order_by("id").values_list("id", flat=True))


async def consume(job_id: int, cursor: int = 0) -> list[dict[str, str]]:
    """The events of one stream, parsed from what the endpoint would send, until it ends."""
    received = []
    async for chunk in events.stream(job_id, cursor):
        for event in chunk.strip().split("\n\n"):  # a chunk may hold several events
            if not event.startswith(("retry:", ":")):
                received.append(dict(line.split(": ", 1) for line in event.split("\n")))
    return received


def metric_ids(received: list[dict[str, str]]) -> list[int]:
    return [int(e["id"]) for e in received if e["event"] == "metric"]


def counted(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[int]:
    """Count the calls of owner.name (still calling it) once each returns; the list's one item is
    the count. Counted at the end, so a test that waits for a read waits until its result is in."""
    calls, original = [0], getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return original(*args, **kwargs)
        finally:
            calls[0] += 1

    monkeypatch.setattr(owner, name, wrapper)
    return calls


class Clock:
    """Stands in for the poll or the pub/sub message: every waiter wakes when the test ticks."""

    def __init__(self) -> None:
        self.ticks, self.waiting, self._event = 0, 0, asyncio.Event()

    async def wait(self, timeout: float) -> None:  # set on the class, it is called without the waiter
        self.waiting += 1
        try:
            await self._event.wait()
        finally:
            self.waiting -= 1

    async def tick(self) -> None:
        while not self.waiting:  # a tick nobody waits for would be lost
            await asyncio.sleep(0.005)
        self.ticks += 1
        event, self._event = self._event, asyncio.Event()
        event.set()


def test_the_streams_of_a_job_share_one_read_per_wake_up(job, monkeypatch):  # type: ignore[no-untyped-def]
    reads = counted(monkeypatch, watchers, "read")
    starts = counted(monkeypatch, watchers, "read_start")
    backlogs = counted(monkeypatch, watchers, "read_backlog")
    encodings = counted(monkeypatch, watchers, "sse")

    async def scenario() -> list[list[dict[str, str]]]:
        clock = Clock()
        monkeypatch.setattr(Waiter, "wait", clock.wait)
        streams = [asyncio.create_task(consume(job.pk)) for _ in range(20)]
        for step in range(3, 8):
            await clock.tick()
            await sync_to_async(add_points)(job.pk, [step])
        await sync_to_async(finish)(job.pk)
        await clock.tick()
        received = await asyncio.gather(*streams)
        assert reads[0] == clock.ticks, "one read per wake-up, not one per stream"
        return received

    received = run(asyncio.wait_for(scenario(), timeout=60))

    assert starts[0] == 1 and reads[0] == 6
    assert backlogs[0] == 1, "one backlog read (the 3 first points) for the 20 streams that joined together"
    # Each event is encoded once for all 20 streams: the 8 points, a few status changes and the end.
    assert encodings[0] <= len(stored_ids(job.pk)) + 8, f"{encodings[0]} encodings: one per stream?"
    for stream in received:
        assert metric_ids(stream) == stored_ids(job.pk)
        assert stream[-1] == {"event": "end", "data": '{"status":"done"}'}
    assert watchers._watchers == {}, "the watcher stops with its last stream"


def test_a_stream_never_ends_without_the_last_points(job, monkeypatch):  # type: ignore[no-untyped-def]
    """The last points and the end of the job commit just before a status read: that read says
    "done", so the points read after it must bring them (read the other way round, they were lost)."""
    original, calls = selectors.job_status_dict, [0]

    def status_after_the_last_commit(*, job: TrainingJob) -> dict[str, Any]:
        calls[0] += 1
        if calls[0] == 2:  # the first read after the stream started
            add_points(job.pk, [3, 4])
            finish(job.pk)
            job = TrainingJob.objects.get(pk=job.pk)
        return original(job=job)

    monkeypatch.setattr(selectors, "job_status_dict", status_after_the_last_commit)

    received = run(asyncio.wait_for(consume(job.pk), timeout=30))

    assert calls[0] >= 2
    assert metric_ids(received) == stored_ids(job.pk) and len(stored_ids(job.pk)) == 5
    assert [e["event"] for e in received[-2:]] == ["status", "end"]


def test_a_stream_resumes_after_its_cursor_and_one_ahead_of_the_watcher_repeats_nothing(job):  # type: ignore[no-untyped-def]
    ids = stored_ids(job.pk)

    async def scenario() -> tuple[list[dict[str, str]], ...]:
        resumed = asyncio.create_task(consume(job.pk, cursor=ids[0]))
        ahead = asyncio.create_task(consume(job.pk, cursor=ids[-1] + 1))  # a point the watcher has not read yet
        await asyncio.sleep(0.1)
        await sync_to_async(add_points)(job.pk, [3, 4])
        await sync_to_async(finish)(job.pk)
        return await asyncio.wait_for(asyncio.gather(resumed, ahead), timeout=30)

    resumed, ahead = run(scenario())

    everything = stored_ids(job.pk)
    assert metric_ids(resumed) == everything[1:]
    assert metric_ids(ahead) == everything[-1:]
    assert resumed[-1]["event"] == ahead[-1]["event"] == "end"


def test_a_failed_read_ends_every_stream_and_the_next_one_starts_afresh(job, monkeypatch):  # type: ignore[no-untyped-def]
    def broken(*args: Any) -> Any:
        raise RuntimeError("database gone")

    monkeypatch.setattr(watchers, "read", broken)

    async def scenario() -> list[BaseException | list[dict[str, str]]]:
        return await asyncio.gather(*(consume(job.pk) for _ in range(3)), return_exceptions=True)

    outcomes = run(asyncio.wait_for(scenario(), timeout=30))

    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert watchers._watchers == {}
    monkeypatch.undo()
    finish(job.pk)
    assert metric_ids(run(consume(job.pk))) == stored_ids(job.pk)


def test_a_stream_that_reads_too_slowly_is_closed_and_its_reconnect_misses_nothing(job, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(watchers, "QUEUE_LIMIT", 2)

    async def scenario() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        clock = Clock()
        monkeypatch.setattr(Waiter, "wait", clock.wait)
        fast = asyncio.create_task(consume(job.pk))
        stream = events.stream(job.pk, 0)
        slow = [await anext(stream) for _ in range(3)]  # retry, the backlog, the first status: then it stalls
        for step in range(3, 8):  # five updates while the slow stream reads none
            await clock.tick()
            await sync_to_async(add_points)(job.pk, [step])
        async for chunk in stream:  # it reads again: the two updates it kept, then it is closed
            slow.append(chunk)
        await sync_to_async(finish)(job.pk)
        await clock.tick()
        return await fast, parse(slow)

    fast, slow = run(asyncio.wait_for(scenario(), timeout=60))

    assert metric_ids(fast) == stored_ids(job.pk), "the other stream of the job goes on"
    assert "end" not in [e["event"] for e in slow], "closed without `end`, so the browser reconnects"
    got = metric_ids(slow)
    assert got == stored_ids(job.pk)[:len(got)] and len(got) < len(stored_ids(job.pk))
    monkeypatch.undo()  # the clock belonged to the finished loop
    resumed = run(asyncio.wait_for(consume(job.pk, cursor=got[-1]), timeout=30))
    assert got + metric_ids(resumed) == stored_ids(job.pk), "Last-Event-ID resumes after what it had"


def parse(chunks: list[str]) -> list[dict[str, str]]:
    return [dict(line.split(": ", 1) for line in event.split("\n"))
            for chunk in chunks for event in chunk.strip().split("\n\n") if not event.startswith(("retry:", ":"))]


def test_a_watched_job_whose_worker_went_silent_is_only_read(job, monkeypatch, settings):  # type: ignore[no-untyped-def]
    """Taking back lost work is the workers' reaper's: a stream on a job with a stale heartbeat
    writes nothing (every statement of every thread is recorded while it runs)."""
    from django.db.backends import utils

    # Silent to this process only: its cutoff is an hour ahead, so a take-back here (the watchers'
    # old one) would take the job. The session's real worker keeps the true cutoff and leaves it alone
    # (a stale heartbeat in the row made its reaper take the job back mid-test on PostgreSQL).
    settings.HEARTBEAT_TIMEOUT = -3600
    assert TrainingJob.objects.get(pk=job.pk).stale
    reads = counted(monkeypatch, watchers, "read")
    statements: list[str] = []
    recording = [True]
    for cls in (utils.CursorWrapper, utils.CursorDebugWrapper):
        original = cls.execute

        def recorded(self, sql, params=None, _original=original):  # type: ignore[no-untyped-def]
            if recording[0]:
                statements.append(sql)
            return _original(self, sql, params)

        monkeypatch.setattr(cls, "execute", recorded)

    async def scenario() -> list[dict[str, str]]:
        clock = Clock()
        monkeypatch.setattr(Waiter, "wait", clock.wait)
        stream = asyncio.create_task(consume(job.pk))
        for _ in range(20):
            await clock.tick()
            while reads[0] < clock.ticks:  # the watcher's read of this tick, before the next one
                await asyncio.sleep(0.005)
        recording[0] = False  # the test's own write below is no stream's
        await sync_to_async(finish)(job.pk)
        while not stream.done():  # the read after the last tick may already see it finished
            if clock.waiting:
                await clock.tick()
            await asyncio.sleep(0.005)
        return await stream

    received = run(asyncio.wait_for(scenario(), timeout=60))

    writes = [sql for sql in statements if not sql.lstrip().upper().startswith("SELECT")]
    assert statements and not writes, writes
    assert [json.loads(e["data"])["status"] for e in received if e["event"] == "status"][0] == "running"


NOON = datetime(2026, 1, 1, 12, tzinfo=UTC)


def write_log(job_id: int, lines: list[str]) -> None:
    """Lines as the worker stores them, each stamped 12:00:00."""
    LogLine.objects.bulk_create([LogLine(job_id=job_id, at=NOON, text=line) for line in lines])
    close_old_connections()


def log_events(received: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The streams' log events, each line without its stamp (write_log's 12:00:00)."""
    events = [json.loads(e["data"]) for e in received if e["event"] == "log"]
    for event in events:
        assert all(line.startswith("12:00:00 ") for line in event["lines"]), event
        event["lines"] = [line.removeprefix("12:00:00 ") for line in event["lines"]]
    return events


def test_a_stream_gets_the_log_tail_then_each_appended_line_once(job, monkeypatch):  # type: ignore[no-untyped-def]
    write_log(job.pk, [f"old {i}" for i in range(50)])
    reads = counted(monkeypatch, watchers, "read")

    async def scenario() -> tuple[list[dict[str, str]], ...]:
        clock = Clock()
        monkeypatch.setattr(Waiter, "wait", clock.wait)
        streams = [asyncio.create_task(consume(job.pk)) for _ in range(3)]
        for lines in (["new 0", "new 1"], [], ["new 2"], ["new 3"], ["new 4"]):
            await clock.tick()
            while reads[0] < clock.ticks:
                await asyncio.sleep(0.005)
            await sync_to_async(write_log)(job.pk, lines)
        await sync_to_async(finish)(job.pk)
        while not all(stream.done() for stream in streams):
            if clock.waiting:
                await clock.tick()
            await asyncio.sleep(0.005)
        return tuple([await stream for stream in streams])

    received = run(asyncio.wait_for(scenario(), timeout=60))

    for stream in received:
        first, *later = log_events(stream)
        assert first == {"lines": [f"old {i}" for i in range(10, 50)], "tail": True}
        assert not any("tail" in event for event in later)
        assert [line for event in later for line in event["lines"]] == ["new 0", "new 1", "new 2", "new 3", "new 4"]
        assert stream[-1]["event"] == "end"
    monkeypatch.undo()  # the clock belonged to the finished loop
    again = run(asyncio.wait_for(consume(job.pk), timeout=30))  # a reconnect: the tail again, now
    assert log_events(again) == [{"lines": [f"old {i}" for i in range(15, 50)]
                                  + ["new 0", "new 1", "new 2", "new 3", "new 4"], "tail": True}]


def test_streams_that_come_back_over_a_while_share_one_backlog_read(job, monkeypatch):  # type: ignore[no-untyped-def]
    """After a web restart the pages reconnect over a second or two with the same Last-Event-ID
    while points arrive: one read of what came before the watcher, the rest from its memory."""
    backlogs = counted(monkeypatch, watchers, "read_backlog")
    reads = counted(monkeypatch, watchers, "read")

    async def scenario() -> list[list[dict[str, str]]]:
        clock = Clock()
        monkeypatch.setattr(Waiter, "wait", clock.wait)
        streams = [asyncio.create_task(consume(job.pk))]
        for step in range(3, 9):
            await clock.tick()
            while reads[0] < clock.ticks:
                await asyncio.sleep(0.005)
            await sync_to_async(add_points)(job.pk, [step])
            streams.append(asyncio.create_task(consume(job.pk)))  # one more page back, from the start
            await asyncio.sleep(0.05)
        await sync_to_async(finish)(job.pk)
        while not all(stream.done() for stream in streams):
            if clock.waiting:
                await clock.tick()
            await asyncio.sleep(0.005)
        return [await stream for stream in streams]

    received = run(asyncio.wait_for(scenario(), timeout=60))

    for stream in received:
        assert metric_ids(stream) == stored_ids(job.pk), "every point once, in order"
    assert backlogs[0] == 1, f"{backlogs[0]} backlog reads for 7 streams with one cursor"


def test_a_stream_that_joins_after_a_take_back_gets_no_deleted_point(job, monkeypatch):  # type: ignore[no-untyped-def]
    reads = counted(monkeypatch, watchers, "read")

    def take_back() -> None:  # what the reaper does: the points after the snapshot go, the job is queued
        MetricPoint.objects.filter(job_id=job.pk, step__gte=4).delete()
        TrainingJob.objects.filter(pk=job.pk).update(status=TrainingJob.Status.QUEUED)
        close_old_connections()

    async def scenario() -> list[dict[str, str]]:
        clock = Clock()
        monkeypatch.setattr(Waiter, "wait", clock.wait)
        first = asyncio.create_task(consume(job.pk))
        for action in (lambda: add_points(job.pk, [3, 4, 5]), take_back):
            await sync_to_async(action)()
            await clock.tick()
            while reads[0] < clock.ticks:
                await asyncio.sleep(0.005)
        late = asyncio.create_task(consume(job.pk))  # joins now, from the start
        await asyncio.sleep(0.1)
        await sync_to_async(finish)(job.pk)
        while not (first.done() and late.done()):
            if clock.waiting:
                await clock.tick()
            await asyncio.sleep(0.005)
        return await late

    late = run(asyncio.wait_for(scenario(), timeout=60))

    assert metric_ids(late) == stored_ids(job.pk), "only the points that are still stored"
