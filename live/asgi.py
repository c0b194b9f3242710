"""The event stream's own entrance, in front of Django's ASGI handler.

Through Django, each stream's request cost 4-7 ms of the web process's CPU before the view ran
(a thread for the request's sync work, the request signals, the middleware; measured on the
2-core VM), so when a web restart brings every open job page back within a second, 200 requests
took 1-3 s of CPU and the last browsers waited seconds for their first points. This entrance
answers `GET /api/v1/jobs/{id}/events/` itself: the access check (live.access, batched with the
streams that connect meanwhile), then the same stream the Django view sends (live.events). It
adds the headers Django's middleware would (nosniff, frame and referrer policy, HSTS on HTTPS),
and leaves to Django whatever it does not serve the same way: another method, a host not in
ALLOWED_HOSTS, plain HTTP when SECURE_SSL_REDIRECT is on.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

from django.conf import settings
from django.http.cookie import parse_cookie
from django.http.request import split_domain_port, validate_host
from django.urls import reverse

from live import access, events

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class EventStreams:
    def __init__(self, app: App) -> None:
        self.app = app
        # The endpoint's path as the URLconf spells it. Reading it loads the URLconf, and with it
        # every view, before the server listens: Django would do that on the first request, and
        # after a restart that is 200 browsers waiting 2-3 s (on the loaded 2-core VM) behind it.
        example = reverse("api-job-events", kwargs={"pk": 4242})
        self.path = re.compile("^" + re.escape(example).replace("4242", r"(\d+)") + "$")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = self.path.match(scope["path"]) if scope["type"] == "http" and scope["method"] == "GET" else None
        if match is None:
            return await self.app(scope, receive, send)
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        secure = _secure(scope, headers)
        host, _ = split_domain_port(headers.get("host", ""))
        allowed = settings.ALLOWED_HOSTS or (["localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
        if not validate_host(host, allowed) or (settings.SECURE_SSL_REDIRECT and not secure):
            return await self.app(scope, receive, send)
        await _serve(int(match[1]), headers, scope, receive, send, secure)


def _secure(scope: Scope, headers: dict[str, str]) -> bool:
    if scope.get("scheme") == "https":
        return True
    proxy = settings.SECURE_PROXY_SSL_HEADER
    if proxy:
        name, value = proxy
        return headers.get(name.removeprefix("HTTP_").replace("_", "-").lower()) == value
    return False


def _security_headers(secure: bool) -> list[tuple[bytes, bytes]]:
    """What SecurityMiddleware and XFrameOptionsMiddleware add to a response."""
    pairs = [("X-Frame-Options", settings.X_FRAME_OPTIONS), ("Vary", "Cookie, Authorization")]
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        pairs.append(("X-Content-Type-Options", "nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        pairs.append(("Referrer-Policy", settings.SECURE_REFERRER_POLICY))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        pairs.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))
    if secure and settings.SECURE_HSTS_SECONDS:
        hsts = f"max-age={settings.SECURE_HSTS_SECONDS}"
        hsts += "; includeSubDomains" if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS else ""
        hsts += "; preload" if settings.SECURE_HSTS_PRELOAD else ""
        pairs.append(("Strict-Transport-Security", hsts))
    return [(name.encode(), value.encode()) for name, value in pairs]


async def _serve(job_id: int, headers: dict[str, str], scope: Scope, receive: Receive, send: Send,
                 secure: bool) -> None:
    session_key = parse_cookie(headers.get("cookie", "")).get(settings.SESSION_COOKIE_NAME)
    try:
        outcome = await access.check(access.Credentials.of(headers.get("authorization", ""), session_key), job_id)
    except Exception:  # the database is away: say so in the API's shape (the browser tries again)
        log.exception("could not check access to the event stream of job %s", job_id)
        return await _refuse(503, "The database cannot be reached; try again.", secure, send)
    if outcome != access.ALLOWED:
        return await _refuse(outcome, access.MESSAGES[outcome], secure, send)
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    cursor = events.parse_cursor(headers.get("last-event-id") or query.get("after", ["0"])[0])
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        *((name.encode(), value.encode()) for name, value in events.STREAM_HEADERS.items()),
        *_security_headers(secure)]})
    sending = asyncio.ensure_future(_send_stream(events.stream(job_id, cursor), send))
    leaving = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({sending, leaving}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sending, leaving):
            task.cancel()
        await asyncio.gather(sending, leaving, return_exceptions=True)
    if sending.done() and not sending.cancelled() and sending.exception() is not None:
        raise sending.exception()  # type: ignore[misc]


async def _refuse(status: int, message: str, secure: bool, send: Send) -> None:
    body = json.dumps({"error": message, "detail": {}}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *_security_headers(secure)]})
    await send({"type": "http.response.body", "body": body})


async def _send_stream(chunks: Any, send: Send) -> None:
    try:
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk.encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        await chunks.aclose()  # leave the watcher now, not when the generator is collected


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
