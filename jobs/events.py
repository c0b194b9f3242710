"""`GET /api/v1/jobs/{id}/events/`: server-sent events from the database, woken by the worker.

Each metric point goes out with `id:` set to its cursor, so a browser that reconnects sends
`Last-Event-ID` and resumes after the last point it saw: nothing lost, nothing doubled.
"""
from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from rest_framework.authtoken.models import Token

from jobs import selectors, services
from jobs.live import Waiter
from jobs.models import TrainingJob

BATCH = 1000
KEEPALIVE_SECONDS = 15.0
REAP_EVERY_SECONDS = 5.0
STATUS_EVERY = 0.5


def sse(data: dict[str, Any], event: str, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _user(request: HttpRequest) -> AbstractBaseUser | AnonymousUser:
    header = request.headers.get("Authorization", "")
    if header.startswith("Token "):
        token = await Token.objects.select_related("user").filter(key=header[6:].strip()).afirst()
        return token.user if token and token.user.is_active else AnonymousUser()
    return await request.auser()


def _error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message, "detail": {}}, status=status)


async def job_events(request: HttpRequest, pk: int) -> HttpResponse:
    user = await _user(request)
    if not user.is_authenticated:
        return _error("Authentication credentials were not provided.", 401)
    job = await TrainingJob.objects.filter(pk=pk, **({} if user.is_staff else {"owner": user})).afirst()
    if job is None:
        return _error("Not found.", 404)
    cursor = _cursor(request)
    response = StreamingHttpResponse(_stream(job.pk, cursor), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # tell proxies not to hold events back
    return response


def _cursor(request: HttpRequest) -> int:
    raw = request.headers.get("Last-Event-ID") or request.GET.get("after") or "0"
    return int(raw) if raw.isdigit() else 0


def _poll(job_id: int, cursor: int, with_status: bool) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """New points after the cursor; the job's status (two more queries) only when asked."""
    points = [selectors.metric_dict(p) for p in selectors.job_metrics(job_id=job_id, after=cursor, limit=BATCH)]
    if not (with_status or points):
        return points, None
    return points, selectors.job_status_dict(job=TrainingJob.objects.get(pk=job_id))


async def _stream(job_id: int, cursor: int) -> AsyncIterator[str]:
    last_status: dict[str, Any] | None = None
    last_sent = last_reap = time.monotonic()
    status_checked = float("-inf")
    yield "retry: 1000\n\n"
    async with Waiter(job_id) as waiter:
        while True:
            # Status changes without new points (done, aborted, failed) are rare: look for them at
            # most every STATUS_EVERY seconds, and whenever points arrive.
            points, status = await sync_to_async(_poll)(
                job_id, cursor, time.monotonic() - status_checked >= STATUS_EVERY)
            if status is None:
                await waiter.wait(timeout=KEEPALIVE_SECONDS)
                continue
            status_checked = time.monotonic()
            sent = bool(points)
            for point in points:
                cursor = point["id"]
                yield sse(point, "metric", cursor)
            comparable = {k: v for k, v in status.items() if k != "elapsed_seconds"}
            if comparable != last_status:
                last_status, sent = comparable, True
                yield sse(status, "status")
            if status["status"] not in TrainingJob.ACTIVE and len(points) < BATCH:
                yield sse({"status": status["status"]}, "end")
                return
            now = time.monotonic()
            if sent:
                last_sent = now
            if now - last_sent >= KEEPALIVE_SECONDS:
                yield ": keep-alive\n\n"
                last_sent = now
            if now - last_reap >= REAP_EVERY_SECONDS:
                await sync_to_async(services.jobs_reap_stale)()
                last_reap = now
            if len(points) < BATCH:
                await waiter.wait(timeout=KEEPALIVE_SECONDS)
