"""Who may open a job's event stream: the checks of streams that connect together go in one go."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone
from rest_framework.authtoken.models import Token

from live import access
from live.access import ALLOWED, NOT_FOUND, UNAUTHENTICATED, Credentials
from tests.jobs.test_watchers import counted, run
from tests.jobs.test_watchers import job as job  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db(transaction=True)


def session_of(user) -> str:  # type: ignore[no-untyped-def]
    """A logged-in session, as the login form leaves it."""
    session = SessionStore()
    session[SESSION_KEY], session[HASH_SESSION_KEY] = str(user.pk), user.get_session_auth_hash()
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session.create()
    return session.session_key


def test_it_checks_the_streams_that_connect_together_in_one_go(job, alice, bob, staff, monkeypatch):  # type: ignore[no-untyped-def]
    batches = counted(monkeypatch, access, "check_all")
    alice_token, bob_session = Token.objects.create(user=alice).key, session_of(bob)
    cases = [
        (Credentials(token=alice_token), job.pk, ALLOWED),
        (Credentials(session_key=session_of(alice)), job.pk, ALLOWED),
        (Credentials(session_key=session_of(staff)), job.pk, ALLOWED),
        (Credentials(session_key=bob_session), job.pk, NOT_FOUND),
        (Credentials(token=alice_token), job.pk + 1000, NOT_FOUND),
        (Credentials(token="not-a-token"), job.pk, UNAUTHENTICATED),
        (Credentials(session_key="not-a-session"), job.pk, UNAUTHENTICATED),
        (Credentials(), job.pk, UNAUTHENTICATED),
    ] * 10

    async def all_at_once() -> list[int]:
        return await asyncio.gather(*(access.check(credentials, pk) for credentials, pk, _ in cases))

    outcomes = run(asyncio.wait_for(all_at_once(), timeout=30))

    assert outcomes == [expected for *_, expected in cases]
    assert batches[0] <= 2, f"{batches[0]} batches for {len(cases)} checks: the first, then the rest together"


def test_it_refuses_a_session_that_a_password_change_ended_an_expired_one_and_an_inactive_user(job, alice, bob):  # type: ignore[no-untyped-def]
    alice_session, bob_token, expired = session_of(alice), Token.objects.create(user=bob).key, session_of(alice)
    Session.objects.filter(session_key=expired).update(expire_date=timezone.now() - timedelta(seconds=1))
    alice.set_password("another-password")
    alice.save()
    bob.is_active = False
    bob.save()
    job.owner = bob
    job.save()

    async def both() -> list[int]:
        return await asyncio.gather(access.check(Credentials(session_key=alice_session), job.pk),
                                    access.check(Credentials(token=bob_token), job.pk),
                                    access.check(Credentials(session_key=expired), job.pk))

    outcomes = run(asyncio.wait_for(both(), timeout=30))

    assert outcomes == [UNAUTHENTICATED, UNAUTHENTICATED, UNAUTHENTICATED]
