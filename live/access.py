"""Who may open a job's event stream, checked for many streams in one go.

When a web process restarts, every open job page reconnects within a second: 200 browsers were
200 requests, each with its own thread hops, its own database connection and its own session,
user and job lookups, and the last of them waited seconds for its first points. Here the checks
that arrive while one is running wait for it and then go together: one thread hop and one
connection for all of them, one query for their tokens and one for their jobs (a session is
still Django's own lookup, `auth.get_user`, so its rules hold: expiry, backends, the password
hash that logs out other sessions).
"""
from __future__ import annotations

import asyncio
import contextvars
import weakref
from dataclasses import dataclass
from importlib import import_module
from types import SimpleNamespace

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import auth
from django.db import close_old_connections
from rest_framework.authtoken.models import Token

from jobs.models import TrainingJob

ALLOWED, UNAUTHENTICATED, NOT_FOUND = 200, 401, 404
MESSAGES = {UNAUTHENTICATED: "Authentication credentials were not provided.", NOT_FOUND: "Not found."}


@dataclass(frozen=True)
class Credentials:
    """What a request presents: an API token (`Authorization: Token ...`) or else a session cookie."""

    token: str = ""
    session_key: str = ""

    @classmethod
    def of(cls, authorization: str, session_key: str | None) -> Credentials:
        if authorization.startswith("Token "):
            return cls(token=authorization[6:].strip())
        return cls(session_key=session_key or "")

    @property
    def empty(self) -> bool:
        return not (self.token or self.session_key)


# --- the synchronous check of a batch (one connection, closed at the end) -----------------------

def check_all(requests: list[tuple[Credentials, int]]) -> list[int]:
    """ALLOWED, UNAUTHENTICATED or NOT_FOUND (another user's job too) for each (credentials, job)."""
    try:
        users = _users({credentials for credentials, _ in requests})
        owners = dict(TrainingJob.objects.filter(pk__in={pk for _, pk in requests}).values_list("pk", "owner_id"))
    finally:
        close_old_connections()
    return [_outcome(users.get(credentials), owners.get(pk)) for credentials, pk in requests]


def _outcome(user: tuple[int, bool] | None, owner: int | None) -> int:
    if user is None:
        return UNAUTHENTICATED
    user_id, staff = user
    return ALLOWED if owner is not None and (staff or owner == user_id) else NOT_FOUND


def _users(every: set[Credentials]) -> dict[Credentials, tuple[int, bool]]:
    """(user id, is staff) of each active user the credentials belong to."""
    keys = {c.token for c in every if c.token}
    rows = Token.objects.filter(key__in=keys, user__is_active=True).values_list("key", "user_id", "user__is_staff")
    by_token = {key: (user_id, staff) for key, user_id, staff in rows}
    users = {c: by_token[c.token] for c in every if c.token in by_token}
    store = import_module(settings.SESSION_ENGINE).SessionStore
    for credentials in every:
        if credentials.session_key and not credentials.token:
            user = auth.get_user(SimpleNamespace(session=store(credentials.session_key)))
            if user.is_authenticated and user.is_active:
                users[credentials] = (user.pk, user.is_staff)
    return users


# --- batching -------------------------------------------------------------------------------------

class Checks:
    """The checks of one event loop: the first goes at once, those that come meanwhile wait and go together."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Credentials, int, asyncio.Future[int]]] = []
        self.running = False

    async def check(self, credentials: Credentials, job_id: int) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiting.append((credentials, job_id, future))
        if not self.running:
            self.running = True
            # A context of its own, as the watchers have: no request's thread is borrowed.
            asyncio.get_running_loop().create_task(self._run(), context=contextvars.Context())
        return await future

    async def _run(self) -> None:
        try:
            while self.waiting:
                batch, self.waiting = self.waiting, []
                try:
                    outcomes = await sync_to_async(check_all)([(c, pk) for c, pk, _ in batch])
                except Exception as exc:  # each of them fails as its own lookup would have
                    outcomes = [exc] * len(batch)
                for (_, _, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():  # its request went away
                        continue
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self.running = False


_checks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Checks] = weakref.WeakKeyDictionary()


async def check(credentials: Credentials, job_id: int) -> int:
    """ALLOWED, UNAUTHENTICATED or NOT_FOUND; no database work without credentials."""
    if credentials.empty:
        return UNAUTHENTICATED
    loop = asyncio.get_running_loop()
    checks = _checks.get(loop)
    if checks is None:
        checks = _checks[loop] = Checks()
    return await checks.check(credentials, job_id)
