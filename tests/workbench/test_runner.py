"""One runner for every kind of leased work: claim, heartbeat, body, then one end in one order."""
from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from jobs.models import TrainingJob
from tests.results.test_export import _finished_job
from workbench.leases import Lease, LeaseLost, lease_claim
from workbench.runner import LeasedRun, run_leased

pytestmark = pytest.mark.django_db(transaction=True)


class Worded(Exception):
    pass


class Recorded(LeasedRun):
    """A kind that says which hook ran when, and whether a heartbeat was beating then."""

    worded = (Worded,)

    def __init__(self, pk: int, body: Any = None) -> None:
        self.pk, self.raise_in_body, self.calls = pk, body, []

    def note(self, name: str) -> None:
        beating = any(t.name.startswith("heartbeat-") for t in threading.enumerate())
        self.calls.append(f"{name}{' (beating)' if beating else ''}")

    def claim(self) -> Lease | None:
        self.note("claim")
        return lease_claim(TrainingJob, self.pk)

    def body(self, lease: Lease) -> None:
        self.note("body")
        if self.raise_in_body is not None:
            raise self.raise_in_body

    def failing(self, lease: Lease, message: str) -> None:
        self.note(f"failing: {message}")

    def stopped(self, lease: Lease, exc: Exception) -> None:
        self.note(f"stopped: {exc}")

    def close(self, lease: Lease) -> None:
        self.note("close")

    def done(self, lease: Lease) -> None:
        self.note("done")
        lease.end(status="done")

    def failed(self, lease: Lease, message: str) -> None:
        self.note(f"failed: {message}")
        lease.end(status="error", error=message)

    def describe(self) -> str:
        return f"recorded job {self.pk}"


@pytest.fixture
def queued(alice):  # type: ignore[no-untyped-def]
    return _finished_job(alice, status="queued")


def ended(job: TrainingJob) -> tuple[str, str]:
    job.refresh_from_db()
    return job.status, job.error


def test_it_runs_the_body_under_a_heartbeat_and_ends_the_row_once_it_has_stopped(queued):
    run = Recorded(queued.pk)

    assert run_leased(run) is True

    assert run.calls == ["claim", "body (beating)", "close (beating)", "done"]
    assert ended(queued) == ("done", "")


def test_a_worded_failure_ends_the_row_in_error_with_its_message_and_no_traceback(queued, caplog):
    run = Recorded(queued.pk, body=Worded("The archive holds no images."))

    run_leased(run)

    assert run.calls == ["claim", "body (beating)", "failing: The archive holds no images. (beating)",
                         "close (beating)", "failed: The archive holds no images."]
    assert ended(queued) == ("error", "The archive holds no images.")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_an_unexpected_failure_is_logged_with_its_traceback_and_ends_the_row_saying_so(queued, caplog):
    run = Recorded(queued.pk, body=KeyError("weights"))

    run_leased(run)

    message = "It failed unexpectedly (KeyError: 'weights')."
    assert run.calls[-1] == f"failed: {message}"
    assert ended(queued) == ("error", message)
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.getMessage() == f"recorded job {queued.pk} failed" and record.exc_info is not None


def test_a_run_that_lost_its_lease_stops_without_ending_the_row(queued):
    run = Recorded(queued.pk, body=LeaseLost("a newer attempt holds it"))

    run_leased(run)

    assert run.calls == ["claim", "body (beating)", "stopped: a newer attempt holds it (beating)", "close (beating)"]
    assert ended(queued) == ("running", "")


def test_a_second_delivery_finds_the_row_claimed_and_runs_nothing(queued):
    run_leased(Recorded(queued.pk))
    again = Recorded(queued.pk)

    assert run_leased(again) is False

    assert again.calls == ["claim"]
