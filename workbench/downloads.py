"""A stored file handed to a browser or a script: streamed from wherever the store keeps it.

From the data folder or the S3 store alike, in chunks read off the event loop (an async iterator:
Django's ASGI handler would gather a sync iterator, the whole file, in memory first); or, when
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
        local = Path(path).is_file()
        size = Path(path).stat().st_size if local else current.size(path)
        chunks = Store.stream(current, path) if local else current.stream(path)  # a local copy is read here
    except (FileNotFoundError, StoreUnavailable):
        raise Http404(missing) from None
    except Exception as exc:  # the store's "no such key" on size() reads differently per server
        raise Http404(missing) from exc
    response = StreamingHttpResponse(_off_the_loop(chunks), content_type=content_type)
    response["Content-Length"] = str(size)
    if filename is not None:
        response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


async def _off_the_loop(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    read = sync_to_async(next, thread_sensitive=False)
    while (block := await read(chunks, None)) is not None:
        yield block
