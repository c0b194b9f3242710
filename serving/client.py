"""The web side of serving: send a request to the serving workers and wait for the answer.

Requests go to the `infer` queue, which only serving workers consume (`manage.py serve` starts
one; compose runs it as the `serving` service), so they never wait behind training, ingest or
evaluation. The images travel inside the message (serving.wire).

A request that cannot be answered says why, within WORKBENCH_SERVING_TIMEOUT:
- 503 when the request cannot be queued or the worker failed (at once, with the worker's reason),
  or when nothing answered in time and no serving worker has reported lately (none is running);
- 504 when serving workers are there but none answered in time (all busy, or one died holding
  it: a request unanswered after WORKBENCH_SERVING_RESEND_SECONDS is sent once more). The
  message expires with the wait, so a worker that frees up later does not run it for nobody.
(It waits even when no worker has reported: one that just started reports within seconds.)

One thread per web process looks for every waiting request's answer in one read a tick (MGET
on Redis): fifty waiting requests cost one poll, not fifty.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import numpy as np
from celery import states
from django.conf import settings

from serving import SERVING_QUEUE, wire

# How often the answers thread reads; a warm classify takes a few milliseconds on the worker.
ANSWER_POLL = 0.001


class ServingUnavailable(Exception):
    """No serving worker could answer: `http_status` 503 (none there, or it failed) or 504 (no answer in time)."""

    def __init__(self, message: str, http_status: int) -> None:
        super().__init__(message)
        self.http_status = http_status


def infer(name: str, backend: str, weights: str, images: np.ndarray) -> np.ndarray:
    """The outputs of the serving task `name` (a model's `infer`: jobs.classify,
    results.classify_compressed) for `images`, one row each. Concurrent requests of this web process
    for the same model go to the serving workers as one request: one message, one answer to wait
    for, one task on the worker (whose own batcher joins them with other web processes' requests)."""
    def run(batch: np.ndarray, oldest: float) -> np.ndarray:
        return outputs(ask(name, backend, weights, images=batch, started=oldest))

    return _web_batcher().run((name, backend, weights), images, run)  # type: ignore[no-any-return]


def outputs(answer: list[list[float]] | str) -> np.ndarray:
    """A serving worker's `infer` answer as an array: lists of scores, or per-pixel ones packed (serving.wire)."""
    return wire.unpack(answer) if isinstance(answer, str) else np.asarray(answer, dtype=np.float64)


def ask(name: str, *args: Any, images: np.ndarray | None = None, started: float | None = None) -> Any:
    """The answer of the serving task `name` to `args` (and `images`, packed as its last argument),
    within WORKBENCH_SERVING_TIMEOUT of `started` (a request that waited in the web's batcher counts
    its wait)."""
    if images is not None:
        args = (*args, wire.pack(images))
    timeout, resend = settings.WORKBENCH_SERVING_TIMEOUT, settings.WORKBENCH_SERVING_RESEND_SECONDS
    started, sent = started if started is not None else time.monotonic(), []
    try:
        sent.append(_send(name, args, timeout))
        while (left := timeout - (time.monotonic() - started)) > 0:
            wait = min(left, resend) if len(sent) == 1 else left
            answer = _answers().first(sent, wait)
            if answer is not None:
                return _result(answer)
            if len(sent) == 1 and time.monotonic() - started < timeout:
                sent.append(_send(name, args, timeout - (time.monotonic() - started)))
    finally:
        for result in sent:
            _answers().forget(result)
    if not serving_workers():
        raise ServingUnavailable(
            f"No serving worker is running (none answered within {timeout:g} s, and none has reported lately), so "
            f"nothing can classify or preview now. `make run` starts one; elsewhere start a worker for the "
            f"'{SERVING_QUEUE}' queue (README: Serving).", 503)
    raise ServingUnavailable(
        f"The serving workers did not answer within {timeout:g} s: they are all busy (overloaded) or stopping. "
        "Try again in a moment.", 504)


def serving_workers() -> list[str]:
    """Names of the workers that consume the serving queue and reported lately."""
    from django.utils import timezone

    from workers.models import Worker
    from workers.selectors import worker_silent_after

    rows = Worker.objects.filter(seen_at__gte=timezone.now() - worker_silent_after()).values_list("name", "queues")
    return [name for name, queues in rows if SERVING_QUEUE in queues]


def _send(name: str, args: tuple[Any, ...], expires: float) -> Any:
    from workbench.queue import enqueue

    try:
        return enqueue(name, *args, queue=SERVING_QUEUE, expires=max(expires, 0.5))
    except Exception as exc:
        raise ServingUnavailable(f"The request could not be queued for the serving workers "
                                 f"({type(exc).__name__}: {exc}).", 503) from None


def _result(meta: dict[str, Any]) -> Any:
    if meta["status"] == states.SUCCESS:
        return meta["result"]
    error = meta.get("result")  # the worker's exception, as the result store gives it back
    what = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    raise ServingUnavailable(f"The serving worker could not do it ({what}).", 503)


class _Answers:
    """Every waiting request's answer, read for all of them at once on one thread."""

    def __init__(self) -> None:
        self._waiting: dict[str, Future[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._work = threading.Event()
        self._thread = threading.Thread(target=self._run, name="serving-answers", daemon=True)
        self._thread.start()

    def first(self, sent: list[Any], timeout: float) -> dict[str, Any] | None:
        """The first answer (the task's meta) of any of `sent`, or None after `timeout`."""
        with self._lock:
            futures = [self._waiting.setdefault(result.id, Future()) for result in sent]
        self._work.set()
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            for future in futures:
                if future.done():
                    return future.result()
            try:  # wake when the first of them is answered
                futures[0].result(timeout=left if len(futures) == 1 else min(left, 0.01))
            except FutureTimeout:
                continue
        return None

    def forget(self, result: Any) -> None:
        with self._lock:
            self._waiting.pop(result.id, None)
        try:  # answers are read once: nothing stays in the result store
            result.backend.delete(result.backend.get_key_for_task(result.id))
        except Exception:
            pass

    def _run(self) -> None:
        from workbench.celery import app

        backend = app.backend
        while True:
            self._work.wait()
            with self._lock:
                ids = [task_id for task_id, future in self._waiting.items() if not future.done()]
            if not ids:
                self._work.clear()
                continue
            try:
                values = backend.mget([backend.get_key_for_task(task_id) for task_id in ids])
            except Exception:
                time.sleep(0.05)  # the result store is down: the waiting requests time out and say so
                continue
            for task_id, value in zip(ids, values):
                if value is None:
                    continue
                meta = backend.decode_result(value)
                if meta["status"] in states.READY_STATES:
                    with self._lock:
                        future = self._waiting.get(task_id)
                    if future is not None and not future.done():
                        future.set_result(meta)
            time.sleep(ANSWER_POLL)


_answers_lock = threading.Lock()
_the_answers: _Answers | None = None
_the_batcher: Any = None


def _web_batcher() -> Any:
    global _the_batcher
    with _answers_lock:
        if _the_batcher is None:
            from serving.batching import Batcher

            _the_batcher = Batcher(settings.WORKBENCH_SERVING_BATCH_WINDOW_MS / 1000, settings.WORKBENCH_SERVING_MAX_BATCH,
                                   with_start=True)
        return _the_batcher


def _answers() -> _Answers:
    global _the_answers
    with _answers_lock:
        if _the_answers is None:
            _the_answers = _Answers()
        return _the_answers
