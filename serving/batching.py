"""Concurrent requests for one model, run as one batch.

A request that finds its model idle runs at once, alone: a lone request never waits for company.
Requests that arrive while a batch runs queue up, and the next batch takes all of them (up to
`max_batch` images of one shape). Once a model has had company, the next batch first waits
`window` seconds for more arrivals: a burst of clients becomes a few large batches, not one
small batch after another. A request therefore waits at most for the batch running when it came,
the window, and its own batch.

No thread of its own: the first waiting request leads (runs the batch), then hands the lead to
the oldest request still waiting, and goes back with its answer.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np

Run = Callable[[np.ndarray], np.ndarray]


@dataclass(eq=False)
class _Request:
    images: np.ndarray
    started: float = field(default_factory=time.monotonic)
    ready: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    result: np.ndarray | None = None
    error: BaseException | None = None

    def answer(self) -> np.ndarray:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


@dataclass
class _Lane:
    """One model's requests: those waiting, and whether a batch is running."""
    waiting: list[_Request] = field(default_factory=list)
    running: bool = False
    company: bool = False  # the last batch had more than one request


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    largest: int = 0


class Batcher:
    """`with_start`: `run` also gets the monotonic time the batch's oldest request came, so that the
    batch can keep within that request's time limit (the web side's batcher: serving.client)."""

    def __init__(self, window: float, max_batch: int, with_start: bool = False) -> None:
        self.window, self.max_batch, self.with_start = window, max(1, max_batch), with_start
        self.stats = BatchStats()
        self._lanes: dict[Hashable, _Lane] = {}
        self._lock = threading.Lock()

    def run(self, key: Hashable, images: np.ndarray, run: Run) -> np.ndarray:
        """`run(images)` for this request, batched with the concurrent ones of the same `key`:
        `run` takes (N, ...) images and answers N rows."""
        request = _Request(images)
        with self._lock:
            lane = self._lanes.setdefault(key, _Lane())
            lane.waiting.append(request)
            if not lane.running:
                lane.running = request.lead = True
        if not request.lead:
            request.ready.wait()
        if request.lead:
            self._lead(key, lane, run)
        return request.answer()

    def _lead(self, key: Hashable, lane: _Lane, run: Run) -> None:
        if lane.company and self.window > 0:
            time.sleep(self.window)
        with self._lock:
            batch = self._take(lane)
        try:
            images = np.concatenate([r.images for r in batch]) if len(batch) > 1 else batch[0].images
            outputs = run(images, min(r.started for r in batch)) if self.with_start else run(images)  # type: ignore[call-arg]
            if len(outputs) != sum(len(r.images) for r in batch):
                raise RuntimeError(f"the model answered {len(outputs)} rows for {sum(len(r.images) for r in batch)} images")
            start = 0
            for r in batch:
                r.result, start = outputs[start:start + len(r.images)], start + len(r.images)
        except BaseException as exc:  # every request of the batch gets the error
            for r in batch:
                r.error = exc
        with self._lock:
            self.stats.batches += 1
            self.stats.requests += len(batch)
            self.stats.largest = max(self.stats.largest, len(batch))
            lane.company = len(batch) > 1
            if lane.waiting:
                lane.waiting[0].lead = True
                lane.waiting[0].ready.set()
            else:
                lane.running = False
                del self._lanes[key]
        for r in batch:
            r.lead = False
            r.ready.set()

    def _take(self, lane: _Lane) -> list[_Request]:
        """The oldest waiting request and those after it of the same image shape, up to max_batch images."""
        first = lane.waiting[0]
        batch, count = [first], len(first.images)
        for r in lane.waiting[1:]:
            if r.images.shape[1:] == first.images.shape[1:] and count + len(r.images) <= self.max_batch:
                batch.append(r)
                count += len(r.images)
        taken = {id(r) for r in batch}
        lane.waiting = [r for r in lane.waiting if id(r) not in taken]
        return batch
