"""Where other apps plug into a job's life without jobs knowing them (sweeps does).

Apps register callbacks in their AppConfig.ready(), the way workbench.recovery kinds are
registered; plain callables, not Django signals, so the call sites say what runs and when.
- `job_ended(job_id)`: after a job's end is committed (done, error, aborted, stopped).
- `validated(job_id, epoch, metrics)`: on the worker, after a validation's points are stored;
  a callback may answer a stop reason (e.g. "early_stopping") and the job then stops at its next
  step and ends as `stopped` with that reason.
A failing callback is logged and never breaks training or the job's end.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

Ended = Callable[[int], None]
Validated = Callable[[int, float, dict[str, float]], str]

_ENDED: list[Ended] = []
_VALIDATED: list[Validated] = []


def on_job_ended(callback: Ended) -> None:
    if callback not in _ENDED:
        _ENDED.append(callback)


def on_validation(callback: Validated) -> None:
    if callback not in _VALIDATED:
        _VALIDATED.append(callback)


def job_ended(job_id: int) -> None:
    for callback in _ENDED:
        try:
            callback(job_id)
        except Exception:
            log.exception("job-ended callback %s failed for job %s", callback, job_id)


def validated(job_id: int, epoch: float, metrics: dict[str, float]) -> str:
    """The first stop reason a callback answers, or ""."""
    for callback in _VALIDATED:
        try:
            reason = callback(job_id, epoch, metrics)
        except Exception:
            log.exception("validation callback %s failed for job %s", callback, job_id)
            continue
        if reason:
            return reason
    return ""
