"""One way to run a piece of leased work: claim → heartbeat → body → end.

Every kind of background work (a dataset ingest, a training job, each kind of result) runs through
`leased`: the kind says how to claim its row, which failures are worded for the user, how the row
ends, and what to log; the runner does the rest in the same order for all of them:

1. claim the queued row (a second delivery of the same task gets None and does nothing);
2. beat a heartbeat while the body runs;
3. the body raises one of the kind's `gone` exceptions (the lease was lost: taken back, or past
   its time limit): the run stops without ending the row, which is not its own any more;
   a `worded` failure: the row ends in error with its message;
   any other exception: logged with its traceback, and the row ends in error saying so;
4. `close` always runs, still under the heartbeat (training flushes its last reports there);
5. the end is written after the heartbeat has stopped, fenced on the run's attempt.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

from workbench.leases import Lease, LeaseLost, heartbeat

log = logging.getLogger(__name__)


class LeasedRun(ABC):
    """The hooks of one kind of leased work, for one run of one row."""

    # Failures worded for the user: the row ends in error with the exception's message.
    worded: ClassVar[tuple[type[Exception], ...]] = ()
    # The run cannot go on and must not end its row (training adds a lost process of a DDP run).
    gone: ClassVar[tuple[type[Exception], ...]] = (LeaseLost,)
    # Where an unexpected failure is logged, with its traceback.
    logger: ClassVar[logging.Logger] = log

    @abstractmethod
    def claim(self) -> Lease | None:
        """Claim the queued row (and load what the body needs); None when it is not ours to run."""

    @abstractmethod
    def done(self, lease: Lease) -> None:
        """End the row after a body that returned."""

    @abstractmethod
    def failed(self, lease: Lease, message: str) -> None:
        """End the row in error with `message`."""

    @abstractmethod
    def describe(self) -> str:
        """What this run is, for the log: "ingest of dataset 3"."""

    def body(self, lease: Lease) -> None:
        """The work itself, for `run_leased`; a kind run through `leased` writes it in the with-block."""
        raise NotImplementedError

    def unexpected(self, exc: Exception) -> str:
        """The user's message for a failure nobody worded."""
        return f"It failed unexpectedly ({type(exc).__name__}: {exc})."

    def failing(self, lease: Lease, message: str) -> None:
        """Told of a failure before `close` (training writes it to the job's log)."""

    def stopped(self, lease: Lease, exc: Exception) -> None:
        """Told that the run stopped on one of its `gone` exceptions; the row is left as it is."""

    def close(self, lease: Lease) -> None:
        """Always, after the body and before the end, under the heartbeat."""


@contextmanager
def leased(run: LeasedRun) -> Iterator[Lease | None]:
    """Run the with-block as the body of `run`: None when the row was not claimed (do nothing).

    Exceptions from the block end the row (or, for `gone` ones, leave it) and are not raised on.
    """
    lease = run.claim()
    if lease is None:
        yield None
        return
    error: str | None = None  # the row ends done while there is none
    lost = False
    with heartbeat(lease):
        try:
            yield lease
        except run.gone as exc:
            lost = True
            run.stopped(lease, exc)
        except run.worded as exc:
            error = str(exc)
            run.failing(lease, error)
        except Exception as exc:
            run.logger.exception("%s failed", run.describe())
            error = run.unexpected(exc)
            run.failing(lease, error)
        finally:
            run.close(lease)
    if lost:
        return
    if error is None:
        run.done(lease)
    else:
        run.failed(lease, error)


def run_leased(run: LeasedRun) -> bool:
    """Claim, then run `run.body` under `leased`; False when the row was not claimed."""
    with leased(run) as lease:
        if lease is None:
            return False
        run.body(lease)
    return True

