"""Upload memory benchmark: the web process's peak RSS growth for one big upload.

    .venv/bin/python bench/upload_memory.py [--mib 1024] [--baseline] [--tiny]

In a fresh temporary data folder on the embedded default (SQLite, filesystem broker): migrate, a
user and token, then a real uvicorn server (`workbench.processes.web_command`) with the default
2 GiB upload cap. One warm-up upload of 1 MiB, then one multipart `POST /api/v1/datasets/` whose
file is `--mib` MiB, generated 1 MiB at a time (the client never holds it). The file is not an
archive, so the server reads and parses the whole body, then answers 400; nothing is ingested.
Prints the server's peak RSS (VmHWM from /proc) before and after, and the growth. Target: under 50 MB.
  --baseline  also run a second server with WORKBENCH_REQUEST_BODY_MEMORY_BYTES above the body's
              size, so the body is never rolled over to disk: Django's own behaviour with
              FILE_UPLOAD_MAX_MEMORY_SIZE = 0, as before the spooling handler.
  --tiny      a 4 MiB upload to both servers: a check that the benchmark still works (tests/bench),
              not a figure.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from workbench.processes import free_port, listening, start, stop, web_command  # noqa: E402

MiB = 1024**2
BOUNDARY = "upload-memory-bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024, help="size of the uploaded file in MiB")
    parser.add_argument("--baseline", action="store_true", help="also measure the old, in-memory spooling")
    parser.add_argument("--tiny", action="store_true", help="seconds, not a figure: a check that it still runs")
    args = parser.parse_args()
    if args.tiny:
        args.mib, args.baseline = 4, True
    if not Path("/proc/self/status").exists():
        sys.exit("needs /proc/<pid>/status (VmHWM) to read peak RSS")
    with tempfile.TemporaryDirectory(prefix="wb-bench-upload-") as data_dir:
        env = environment(data_dir)
        os.environ.update(env)
        for key in ("DATABASE_URL", "CELERY_BROKER_URL"):
            os.environ.pop(key, None)
        token = prepare()
        runs = [("spooled to disk (1 MiB threshold)", {})]
        if args.baseline:
            runs.append(("old: in memory (never rolled over)", {"WORKBENCH_REQUEST_BODY_MEMORY_BYTES": str(4 * 1024**3)}))
        for label, extra in runs:
            measure(label, {**env, **extra}, Path(data_dir), token, args.mib * MiB)


def environment(data_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(DJANGO_SETTINGS_MODULE="workbench.settings", WORKBENCH_DATA_DIR=data_dir, PYTHONUNBUFFERED="1",
               LOG_LEVEL="WARNING")
    return env


def prepare() -> str:
    """Migrate the throw-away database and return a token for a new user."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    call_command("migrate", verbosity=0)
    owner = get_user_model().objects.create_user("bench", password="bench-password")
    return Token.objects.create(user=owner).key


def measure(label: str, env: dict[str, str], data_dir: Path, token: str, size: int) -> None:
    port = free_port()
    proc = start(web_command("127.0.0.1", port), env=env, log=data_dir / "web.log", ready=lambda: listening(port),
                 what="uvicorn")
    try:
        upload(port, token, MiB)  # warm-up: imports and first-request caches are not the upload's cost
        before = peak_rss(proc)
        started = time.monotonic()
        status, body = upload(port, token, size)
        seconds = time.monotonic() - started
        after = peak_rss(proc)
    finally:
        stop(proc)
    print(f"{label}: {size / MiB:.0f} MiB upload -> {status} ({body.get('error', '')[:50]}) in {seconds:.1f} s; "
          f"peak RSS {before / MiB:.1f} -> {after / MiB:.1f} MiB, growth {(after - before) / MiB:.1f} MiB",
          flush=True)


def peak_rss(proc: subprocess.Popen[bytes]) -> int:
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc status")


def upload(port: int, token: str, size: int) -> tuple[int, dict]:  # type: ignore[type-arg]
    """A multipart dataset upload with a `size`-byte file, sent 1 MiB at a time."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nbig\r\n"
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"archive\"; filename=\"big.zip\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    # Not zeros: a run of zero blocks reads as an (empty) tar archive, which would be ingested.
    chunk = (b"not an archive. " * (MiB // 16))[:MiB]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        connection.putrequest("POST", "/api/v1/datasets/")
        connection.putheader("Authorization", f"Token {token}")
        connection.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
        connection.putheader("Content-Length", str(len(head) + size + len(tail)))
        connection.endheaders()
        connection.send(head)
        for offset in range(0, size, MiB):
            connection.send(chunk[:min(MiB, size - offset)])
        connection.send(tail)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


if __name__ == "__main__":
    main()
