"""`GET /api/v1/jobs/{id}/events/`: server-sent events from the database, woken by the worker.

The streams of one job share one watcher per process (live.watchers): one read per wake-up
whatever the number of browsers.

Each metric point goes out with `id:` set to its cursor, so a browser that reconnects sends
`Last-Event-ID` and resumes after the last point it saw: nothing lost, nothing doubled.
The job's log goes out as `log` events: the tail first (`"tail": true`), then the lines appended
since, read once per update by the watcher for every stream (the page used to ask for the whole
job once a second per viewer to show them).
"""
from __future__ import annotations

from collections.abc import AsyncIterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse

from live import access, watchers

KEEPALIVE_SECONDS = 15.0
# X-Accel-Buffering: tell proxies not to hold events back.
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message, "detail": {}}, status=status)


async def job_events(request: HttpRequest, pk: int) -> HttpResponse:
    """Django's entrance; under uvicorn, live.asgi serves the same stream before Django (it is faster
    when many browsers connect at once). Both check access with live.access."""
    credentials = access.Credentials.of(request.headers.get("Authorization", ""),
                                        request.COOKIES.get(settings.SESSION_COOKIE_NAME))
    outcome = await access.check(credentials, pk)
    if outcome != access.ALLOWED:
        return _error(access.MESSAGES[outcome], outcome)
    response = StreamingHttpResponse(stream(pk, _cursor(request)), content_type="text/event-stream")
    for header, value in STREAM_HEADERS.items():
        response[header] = value
    return response


def _cursor(request: HttpRequest) -> int:
    return parse_cursor(request.headers.get("Last-Event-ID") or request.GET.get("after") or "0")


def parse_cursor(raw: str) -> int:
    return int(raw) if raw.isdigit() else 0


async def stream(job_id: int, cursor: int) -> AsyncIterator[str]:
    """This stream's own backlog after its cursor once, then the updates its job's watcher shares."""
    yield "retry: 1000\n\n"
    async with watchers.subscribe(job_id) as feed:
        async for part in feed.backlog(after=cursor):
            yield part.text
            cursor = part.last
        update, sent_version = feed.first, None
        while True:
            # One chunk per update, not per event: each chunk is a send through the server.
            chunks = [update.metric_events_after(cursor)]
            cursor = max(cursor, update.position)
            if update.status_version != sent_version:
                sent_version = update.status_version
                chunks.append(update.status_event)
            # The first update's lines are in its tail; later ones bring only what was appended.
            chunks.append(update.tail_event if update is feed.first else update.log_event if update.log else "")
            if update.ended:  # its status was read before its points: none is left behind
                yield "".join(chunks) + update.end_event
                return
            if any(chunks):
                yield "".join(chunks)
            try:
                while (update := await feed.next(timeout=KEEPALIVE_SECONDS)) is None:
                    yield ": keep-alive\n\n"
            except watchers.Lagging:
                return  # no `end`: the browser reconnects after `retry` and resumes from its last id
