"""The token endpoint answers a burst of password guesses with 429 and says when to try again."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/v1/auth/token/"


@pytest.fixture(autouse=True)
def _fresh_throttle_history() -> Iterator[None]:
    """The throttle counts in Django's cache, which outlives a test: start and leave it empty."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def token_rate(settings):  # type: ignore[no-untyped-def]
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"token": "3/min"}}
    return 3


def guess(client: APIClient, password: str = "wrong"):  # type: ignore[no-untyped-def]
    return client.post(TOKEN_URL, {"username": "alice", "password": password}, format="json")


def test_it_refuses_the_guess_after_the_rate_with_429_and_the_json_error_shape(alice, token_rate):
    client = APIClient()
    answers = [guess(client) for _ in range(token_rate)]
    assert [a.status_code for a in answers] == [400] * token_rate

    throttled = guess(client)

    assert throttled.status_code == 429
    body = throttled.json()
    assert set(body) == {"error", "detail"} and body["detail"] == {}
    assert "throttled" in body["error"] and "seconds" in body["error"]
    assert 0 < int(throttled["Retry-After"]) <= 60


def test_it_refuses_even_the_right_password_once_throttled(alice, token_rate):
    client = APIClient()
    for _ in range(token_rate):
        guess(client)

    assert guess(client, "alice-password").status_code == 429


def test_it_counts_each_client_address_apart(alice, token_rate):
    for _ in range(token_rate + 1):
        guess(APIClient(REMOTE_ADDR="10.0.0.1"))

    assert guess(APIClient(REMOTE_ADDR="10.0.0.2"), "alice-password").status_code == 200


def test_it_lets_a_normal_client_have_its_token_under_the_default_rate(alice):
    answers = [guess(APIClient(), "alice-password") for _ in range(5)]

    assert {a.status_code for a in answers} == {200}
