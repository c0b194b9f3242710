"""Uploads stream to disk in the web process, and every upload endpoint answers an over-cap file with a 413."""
from __future__ import annotations

import http.client
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.messages import get_messages

from datasets.models import Dataset
from jobs.models import Snapshot, TrainingJob
from results.models import BatchClassification, Compression
from tests.conftest import ServerURL, _subprocess_env
from workbench import processes

MiB = 1024**2
UPLOAD_BYTES = 200 * MiB
SERVER_CAP = 512 * MiB
BOUNDARY = "memory-test-boundary"


# --- memory: a big upload through the real ASGI server ----------------------------------------

def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def multipart_parts(size: int, filename: str) -> tuple[bytes, bytes]:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nbig\r\n"
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"archive\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head, f"\r\n--{BOUNDARY}--\r\n".encode()


def post_streamed(base_url: str, token: str, size: int, filename: str = "big.zip") -> tuple[int, dict]:  # type: ignore[type-arg]
    """POST a multipart dataset upload with a `size`-byte file, written 1 MiB at a time (never held whole)."""
    head, tail = multipart_parts(size, filename)
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=300)
    try:
        connection.putrequest("POST", "/api/v1/datasets/")
        connection.putheader("Authorization", f"Token {token}")
        connection.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
        connection.putheader("Content-Length", str(len(head) + size + len(tail)))
        connection.endheaders()
        connection.send(head)
        # Not zeros: a run of zero blocks reads as an (empty) tar archive.
        chunk = (b"not an archive. " * (MiB // 16))[:MiB]
        for start in range(0, size, MiB):
            connection.send(chunk[:min(MiB, size - start)])
        connection.send(tail)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.fixture
def roomy_server(django_db_setup, django_db_blocker) -> Iterator[ServerURL]:  # type: ignore[no-untyped-def]
    """A uvicorn server of its own whose upload cap leaves room for a 200 MiB body."""
    port = processes.free_port()
    log = Path(settings.DATA_DIR) / "web-roomy.log"
    env = {**_subprocess_env(), "WORKBENCH_MAX_UPLOAD_BYTES": str(SERVER_CAP)}
    proc = processes.start(processes.web_command("127.0.0.1", port), log=log, ready=lambda: processes.listening(port),
                           what="uvicorn", env=env)
    url = ServerURL(f"http://127.0.0.1:{port}")
    url.pid = proc.pid
    yield url
    processes.stop(proc)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc/<pid>/status (VmHWM) to read peak RSS")
@pytest.mark.django_db(transaction=True)
def test_a_big_upload_streams_to_disk_without_growing_the_web_process(roomy_server, alice):  # type: ignore[no-untyped-def]
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=alice).key
    uploads = Path(settings.FILE_UPLOAD_TEMP_DIR)
    before_files = set(uploads.iterdir())
    # Warm up first, so imports and first-request caches are not counted as the upload's cost.
    assert post_streamed(roomy_server, token, MiB)[0] == 400
    baseline = peak_rss(roomy_server.pid)

    status, body = post_streamed(roomy_server, token, UPLOAD_BYTES)

    growth = peak_rss(roomy_server.pid) - baseline
    # The server read and parsed the whole body before it could look inside the file and refuse it.
    assert status == 400 and "not a zip or tar archive" in body["error"], body
    assert growth < UPLOAD_BYTES * 0.25, (
        f"peak RSS grew {growth / MiB:.1f} MiB for a {UPLOAD_BYTES / MiB:.0f} MiB upload "
        f"(baseline VmHWM {baseline / MiB:.1f} MiB; limit {UPLOAD_BYTES * 0.25 / MiB:.0f} MiB)")
    assert set(uploads.iterdir()) - before_files == set(), "the upload was left in FILE_UPLOAD_TEMP_DIR"
    assert not Dataset.objects.exists()


# --- 413 for over-cap images and archives ------------------------------------------------------

def over_cap(name: str) -> io.BytesIO:
    upload = io.BytesIO(b"\0" * (settings.MAX_UPLOAD_BYTES + 64 * 1024))
    upload.name = name
    return upload


@pytest.fixture
def alice_work(alice):  # type: ignore[no-untyped-def]
    """A job of alice's with a snapshot and a compression row: enough for the endpoints to look past the 404."""
    dataset = Dataset.objects.create(owner=alice, name="digits", source="example", source_name="x", image_width=28,
                                     image_height=28, channels=1, resize_mode="squash", val_percent=20,
                                     test_percent=0, seed=0, status="ready", classes=[str(i) for i in range(10)])
    job = TrainingJob.objects.create(owner=alice, dataset=dataset, name="j", network="lenet", network_spec={},
                                     status="done")
    snapshot = Snapshot.objects.create(job=job, epoch=1.0, path="snapshots/1.safetensors")
    compression = Compression.objects.create(job=job, snapshot=snapshot, method="int8")
    return job, compression


@pytest.mark.django_db
@pytest.mark.parametrize(("endpoint", "field"), [
    ("/api/v1/jobs/{job}/classify/", "image"),
    ("/api/v1/jobs/{job}/inspect/", "image"),
    ("/api/v1/jobs/{job}/classify-many/", "archive"),
    ("/api/v1/jobs/{job}/compressions/{compression}/classify/", "image"),
])
def test_an_over_cap_upload_answers_413_with_the_error_shape(alice_api, alice_work, endpoint, field):  # type: ignore[no-untyped-def]
    job, compression = alice_work

    response = alice_api.post(endpoint.format(job=job.pk, compression=compression.pk),
                              {field: over_cap("big.png" if field == "image" else "big.zip")}, format="multipart")

    assert response.status_code == 413, response.content[:500]
    body = response.json()
    assert body == {"error": "The upload is larger than the configured limit.", "detail": {}}
    assert not BatchClassification.objects.exists()


@pytest.mark.django_db
def test_an_over_cap_classify_many_form_says_so(client, alice, alice_work):  # type: ignore[no-untyped-def]
    job, _ = alice_work
    client.force_login(alice)

    response = client.post(f"/jobs/{job.pk}/classify-many/", {"archive": over_cap("big.zip")})

    assert response.status_code == 302 and response.url == f"/jobs/{job.pk}/"
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "The upload is larger than the configured limit (WORKBENCH_MAX_UPLOAD_BYTES)."]
    assert not BatchClassification.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", ["/api/v1/jobs/1/classify/", "/api/v1/jobs/1/inspect/",
                                      "/api/v1/jobs/1/classify-many/"])
def test_the_asgi_server_answers_413_json_for_an_over_cap_image(web_server, endpoint):  # type: ignore[no-untyped-def]
    host, port = web_server.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest("POST", endpoint)
        connection.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
        connection.putheader("Content-Length", str(settings.MAX_UPLOAD_BYTES + 2 * MiB))
        connection.endheaders()
        response = connection.getresponse()
        status, content_type, body = response.status, response.getheader("Content-Type"), json.loads(response.read())
    finally:
        connection.close()

    assert status == 413 and content_type == "application/json"
    assert body["error"].startswith("The upload is larger than the") and isinstance(body["detail"], dict)


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["classify", "inspect"])
def test_the_classify_and_inspect_pages_say_an_upload_is_too_large(alice, page):
    from django.test import Client

    from tests.results.test_export import _finished_job

    job = _finished_job(alice)
    client = Client()
    client.force_login(alice)
    image = io.BytesIO(b"x" * (settings.MAX_UPLOAD_BYTES + 65536))
    image.name = "huge.png"

    response = client.post(f"/jobs/{job.pk}/{page}/", {"image": image})

    assert response.status_code == 400
    assert "larger than the configured limit" in response.content.decode()
    assert "This field is required" not in response.content.decode()
