from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload


class CappedUploadHandler(FileUploadHandler):
    """Stops reading an upload once it passes WORKBENCH_MAX_UPLOAD_BYTES.

    The request is marked so the view can answer with a clear 413 instead of a missing file.
    """

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):  # type: ignore[no-untyped-def]
        self.request.upload_too_large = False
        self.seen = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.seen += len(raw_data)
        if self.seen > settings.MAX_UPLOAD_BYTES:
            self.request.upload_too_large = True
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


TOO_LARGE = "The upload is larger than the configured limit."
TOO_LARGE_FORM = "The upload is larger than the configured limit (WORKBENCH_MAX_UPLOAD_BYTES)."


def upload_too_large(request: object) -> bool:
    """Whether CappedUploadHandler stopped this request's upload (a Django or a DRF request).

    Only parsing the body sets the flag: ask after touching request.data, .POST or .FILES.
    """
    return bool(getattr(request, "upload_too_large", False))
