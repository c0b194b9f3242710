"""A stored file handed to a browser or a script: streamed from wherever the store keeps it.

From the data folder or the S3 store alike, in chunks; under the ASGI server each chunk is read off
the event loop and sent before the next is read (Django's own StreamingHttpResponse gathers a sync
iterator, the whole file, in memory first; an async one could not be read by a sync caller such as
WSGI or the test client while a loop runs in its thread). Or, when
WORKBENCH_STORAGE_PRESIGNED is set, a redirect to a presigned URL of the store, so the bytes never
pass through the web process.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from asgiref.sync import sync_to_async
from django.http import Http404, HttpResponseBase, HttpResponseRedirect, StreamingHttpResponse
from django.utils.http import content_disposition_header

from workbench.storage import Store, StoreUnavailable, store


def stored_file_response(path: Path, *, content_type: str, filename: str | None = None,
                         missing: str = "The file is gone.") -> HttpResponseBase:
    """The file as an attachment named `filename` (inline when None); 404 saying `missing` when it is in no store."""
    current = store()
    if filename is not None and not Path(path).is_file() and (url := current.download_url(path, filename)):
        return HttpResponseRedirect(url)
    try:
        # A copy this host has is read here; otherwise one GET gives the size and the bytes.
        size, chunks = Store.opened(current, path) if Path(path).is_file() else current.opened(path)
    except (FileNotFoundError, StoreUnavailable):
        raise Http404(missing) from None
    response = ChunkedResponse(chunks, content_type=content_type)
    response["Content-Length"] = str(size)
    if filename is not None:
        response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


class ChunkedResponse(StreamingHttpResponse):
    """A sync iterator of chunks that the ASGI handler reads one chunk at a time, in a thread."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks: Iterator[bytes] = iter(self.streaming_content)
        read = sync_to_async(next, thread_sensitive=False)
        while (block := await read(chunks, None)) is not None:
            yield block
