"""Sending work to the Celery workers by task name.

Services queue work by the name its task was given (`jobs.train`, `results.evaluate`), never by
importing the task module, which imports the services back: the name is the interface, routed to
its queue by CELERY_TASK_ROUTES. Request/response work (classify, inspect) waits for its answer here.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

# How often a waiting request looks for the worker's answer; Celery's default (0.5 s) would be
# most of a warm classify's time.
RESULT_POLL = 0.02


def enqueue(name: str, *args: Any, queue: str | None = None) -> Any:
    """Send the task called `name` with `args`; its AsyncResult."""
    from workbench.celery import app

    return app.send_task(name, args=list(args), queue=queue)


class WorkerUnavailable(Exception):
    """No worker answered (504) or the worker failed (503); the API answers with `http_status`."""

    def __init__(self, message: str, http_status: int) -> None:
        super().__init__(message)
        self.http_status = http_status


def run_on_worker(name: str, pixels: np.ndarray, *args: Any) -> Any:
    """Hand `pixels` to a request/response task on the worker and wait for its answer.

    The pixels travel as a temporary .npy file (web and workers share the data folder), its path
    the task's last argument. The stored answers are forgotten once read, so these tasks leave
    nothing in the result store; one whose asker timed out expires (see workbench.celery).
    """
    path = Path(settings.FILE_UPLOAD_TEMP_DIR) / f"{name}-{uuid.uuid4().hex}.npy"
    np.save(path, pixels)
    try:
        return ask_worker(name, *args, str(path))
    finally:
        path.unlink(missing_ok=True)


def ask_worker(name: str, *args: Any) -> Any:
    """A request/response task's answer (resent once, then WorkerUnavailable); forgotten once read."""
    sent: list[Any] = []
    try:
        return _first_answer(name, list(args), sent)
    finally:
        for result in sent:
            result.forget()


def _first_answer(name: str, args: list[Any], sent: list[Any]) -> Any:
    """Wait for an answer; ask once more after WORKBENCH_REQUEST_RESEND_SECONDS, because a worker
    that dies holding a request takes it with it (a second answer is the same answer)."""
    timeout, resend = settings.WORKBENCH_REQUEST_TIMEOUT, settings.WORKBENCH_REQUEST_RESEND_SECONDS
    started = time.monotonic()
    sent.append(_send(name, args))
    while (waited := time.monotonic() - started) < timeout:
        for result in sent:
            if result.ready():
                return _answer(result)
        if len(sent) == 1 and waited >= resend:
            sent.append(_send(name, args))
        time.sleep(RESULT_POLL)
    raise WorkerUnavailable(f"No worker answered within {timeout:g} s. Is a worker running? Try again.", 504)


def _send(name: str, args: list[Any]) -> Any:
    try:
        return enqueue(name, *args)
    except Exception as exc:
        raise WorkerUnavailable(f"The request could not be queued for a worker ({type(exc).__name__}: {exc}).",
                                503) from None


def _answer(result: Any) -> Any:
    try:
        return result.get(timeout=5, interval=RESULT_POLL)
    except Exception as exc:
        raise WorkerUnavailable(f"The worker could not do it ({type(exc).__name__}: {exc}).", 503) from None
