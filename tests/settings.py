"""Test settings: the product's own settings on a throw-away data folder with small caps.

Set before `workbench.settings` is read, so the Celery worker and the web server that the tests
start as subprocesses (with this module) see the very same configuration.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

_data = Path(os.environ.setdefault("WORKBENCH_DATA_DIR", tempfile.mkdtemp(prefix="workbench-test-")))
(_data / "server-root").mkdir(parents=True, exist_ok=True)
os.environ.setdefault("WORKBENCH_SERVER_ROOTS", str(_data / "server-root"))
os.environ.setdefault("WORKBENCH_MAX_UPLOAD_BYTES", str(8 * 1024**2))
os.environ.setdefault("WORKBENCH_MAX_ARCHIVE_MEMBERS", "3000")
os.environ.setdefault("WORKBENCH_MAX_EXTRACTED_BYTES", str(48 * 1024**2))
os.environ.setdefault("WORKBENCH_MAX_IMAGE_PIXELS", str(4_000_000))
os.environ.setdefault("WORKBENCH_INGEST_WORKERS", "2")
os.environ.setdefault("WORKBENCH_HEARTBEAT_SECONDS", "1")
os.environ.setdefault("WORKBENCH_HEARTBEAT_TIMEOUT", "6")
os.environ.setdefault("WORKBENCH_TORCH_THREADS", "1")
os.environ.setdefault("WORKBENCH_SYSTEM_METRICS_SECONDS", "1")

from workbench.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
