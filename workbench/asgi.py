from __future__ import annotations

import json
import os
import tempfile
from typing import IO, Any, Awaitable, Callable

import django
from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "workbench.settings")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class SpoolingASGIHandler(ASGIHandler):
    """Django's ASGI handler, with request bodies spooled to disk past REQUEST_BODY_MEMORY_BYTES.

    Django spools the body in memory up to FILE_UPLOAD_MAX_MEMORY_SIZE, which is 0 here so that the
    upload handlers write every file to disk; for a SpooledTemporaryFile 0 means "never roll over",
    so each upload was held whole in the web process. Small bodies (forms, JSON) stay in memory.
    """

    async def read_body(self, receive: Receive) -> IO[bytes]:
        # Unnamed on POSIX once rolled over: the disk space goes back when Django closes it after
        # the response (it does on every path), or when the process ends.
        body_file = tempfile.SpooledTemporaryFile(max_size=settings.REQUEST_BODY_MEMORY_BYTES, mode="w+b",
                                                  dir=settings.FILE_UPLOAD_TEMP_DIR)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                body_file.close()
                raise RequestAborted()
            if "body" in message:
                body_file.write(message["body"])
            if not message.get("more_body", False):
                break
        body_file.seek(0)
        return body_file


def get_application() -> SpoolingASGIHandler:
    """What django.core.asgi.get_asgi_application does, with the spooling handler."""
    django.setup(set_prefix=False)
    return SpoolingASGIHandler()


django_application = get_application()

from live.asgi import EventStreams  # noqa: E402  (Django is set up above)


class BodyLimit:
    """Refuses request bodies over the upload cap before Django spools them to disk.

    Django's ASGI handler reads the whole body into a temporary file before any view runs,
    so the cap has to be enforced here, on the declared length and on the bytes that arrive.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], cap: int, allowance: int) -> None:
        self.app = app
        self.cap = cap
        # The multipart framing around a file of exactly `cap` bytes is allowed for.
        self.limit = cap + allowance

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._too_large(send)
        seen = 0
        started = False

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                # No declared length and too many bytes: drop the request, nothing is kept.
                return {"type": "http.disconnect"}
            return message

        async def watched(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, watched)
        if seen > self.limit and not started:
            # Django gives up on a dropped request without answering; the client still gets a 413.
            await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        mib = self.cap / 1024**2
        body = json.dumps(
            {"error": f"The upload is larger than the {mib:.0f} MiB limit.", "detail": {"limit_bytes": self.cap}}
        ).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


# The live event stream has its own entrance before Django's (live.asgi: 200 browsers reconnecting at once).
application = BodyLimit(EventStreams(django_application), settings.MAX_UPLOAD_BYTES, allowance=1024**2)
