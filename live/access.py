"""Who may open a job's event stream, checked for many streams in one go.

When a web process restarts, every open job page reconnects within a second: 200 browsers were
200 requests, each with its own thread hops, its own database connection and its own session,
user and job lookups, and the last of them waited seconds for its first points. Here the checks
that arrive while one is running wait for it and then go together: one thread hop and one
connection for all of them (on a thread of its own), one query for their tokens, two for their sessions and users, one
for their jobs. Sessions keep `auth.get_user`'s rules (expiry, the backend, the password hash
that logs out other sessions when a password changes).
"""
from __future__ import annotations

import asyncio
import contextvars
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import import_module
from types import SimpleNamespace

from django.conf import settings
from django.contrib import auth
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.db import close_old_connections
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from rest_framework.authtoken.models import Token

from jobs.models import TrainingJob

ALLOWED, UNAUTHENTICATED, NOT_FOUND = 200, 401, 404
DB_SESSIONS, MODEL_BACKEND = "django.contrib.sessions.backends.db", "django.contrib.auth.backends.ModelBackend"
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
    users = _users({credentials for credentials, _ in requests})
    owners = dict(TrainingJob.objects.filter(pk__in={pk for _, pk in requests}).values_list("pk", "owner_id"))
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
    by_session = _session_users({c.session_key for c in every if c.session_key and not c.token})
    return {c: user for c in every if (user := by_token.get(c.token) if c.token else by_session.get(c.session_key))}


def _session_users(keys: set[str]) -> dict[str, tuple[int, bool]]:
    """What `auth.get_user` finds for each session, in two queries for all of them when sessions
    are in the database and users come from ModelBackend (Django's defaults, this project's): 200
    sessions one by one took 0.3-0.4 s of the web's CPU. Anything else goes through get_user itself.
    A session whose password hash no longer matches is refused (get_user would also flush it:
    that write waits for the user's next page)."""
    if not keys:
        return {}
    engine = import_module(settings.SESSION_ENGINE)
    if settings.SESSION_ENGINE != DB_SESSIONS:
        return {key: user for key in keys if (user := _get_user(engine.SessionStore(key)))}
    decode = engine.SessionStore().decode
    rows = Session.objects.filter(session_key__in=keys, expire_date__gt=timezone.now())
    sessions = {key: decode(data) for key, data in rows.values_list("session_key", "session_data")}
    model = {key: data for key, data in sessions.items()
             if data.get(BACKEND_SESSION_KEY) == MODEL_BACKEND and MODEL_BACKEND in settings.AUTHENTICATION_BACKENDS}
    users = _users_by_id({data.get(SESSION_KEY) for data in model.values()})
    found = {key: _get_user(engine.SessionStore(key)) for key in sessions.keys() - model.keys()}
    for key, data in model.items():
        user = users.get(str(data.get(SESSION_KEY)))
        if user is not None and user.is_active and _hash_holds(user, data.get(HASH_SESSION_KEY)):
            found[key] = (user.pk, user.is_staff)
    return {key: user for key, user in found.items() if user}


def _users_by_id(ids: set[object]) -> dict[str, AbstractBaseUser]:
    model = get_user_model()
    valid = []
    for raw in ids:
        try:
            valid.append(model._meta.pk.to_python(raw))
        except ValidationError:  # get_user: a bad id is nobody
            continue
    return {str(user.pk): user for user in model._default_manager.filter(pk__in=valid)}


def _hash_holds(user: AbstractBaseUser, session_hash: object) -> bool:
    """get_user's check: the hash of the user's password as the session was logged in with, under
    SECRET_KEY or one of its fallbacks."""
    if not isinstance(session_hash, str) or not session_hash:
        return False
    if constant_time_compare(session_hash, user.get_session_auth_hash()):
        return True
    return any(constant_time_compare(session_hash, user._get_session_auth_hash(secret=secret))
               for secret in settings.SECRET_KEY_FALLBACKS)


def _get_user(session: object) -> tuple[int, bool] | None:
    user = auth.get_user(SimpleNamespace(session=session))
    return (user.pk, user.is_staff) if user.is_authenticated and user.is_active else None


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
        loop = asyncio.get_running_loop()
        try:
            while self.waiting:
                batch, self.waiting = self.waiting, []
                try:
                    outcomes = await loop.run_in_executor(_thread, check_all, [(c, pk) for c, pk, _ in batch])
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
            # Batches that follow each other share a connection; none is held once they stop.
            await asyncio.shield(loop.run_in_executor(_thread, close_old_connections))


# A thread of their own: behind the watchers' reads (sync_to_async's one thread) each batch waited
# 30-40 ms for its turn on PostgreSQL, and a burst's checks waited for each other.
_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-access")
_checks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Checks] = weakref.WeakKeyDictionary()


async def check(credentials: Credentials, job_id: int) -> int:
    """ALLOWED, UNAUTHENTICATED or NOT_FOUND; no database work without credentials."""
    if credentials.empty:
        return UNAUTHENTICATED
    if not 0 < job_id < 2**63:  # no database holds it, and one bad id must not fail the others' batch
        return NOT_FOUND
    loop = asyncio.get_running_loop()
    checks = _checks.get(loop)
    if checks is None:
        checks = _checks[loop] = Checks()
    return await checks.check(credentials, job_id)
