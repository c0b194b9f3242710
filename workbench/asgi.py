from __future__ import annotations

import json
import os
from typing import Any, Awaitable, Callable

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "workbench.settings")

django_application = get_asgi_application()

from django.conf import settings  # noqa: E402  (settings are ready only after the line above)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


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


application = BodyLimit(django_application, settings.MAX_UPLOAD_BYTES, allowance=1024**2)
