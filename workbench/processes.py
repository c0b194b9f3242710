"""The workbench's own processes, started the same way by `manage.py serve`, the tests and the
benchmarks, so what the tests exercise is what `make run` runs."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STORE_REFUSED = 2  # the exit status of a start refused for a store it cannot use


def web_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "workbench.asgi:application", "--host", host, "--port", str(port),
            "--no-access-log", "--timeout-graceful-shutdown", "5"]


def worker_command(*, queues: str, name: str, concurrency: int = 2) -> list[str]:
    """A Celery worker; `name` is its node name, "<name>@<this host>" unless it names a host itself."""
    node = name if "@" in name else f"{name}@%h"
    return [sys.executable, "-m", "celery", "-A", "workbench", "worker", "--queues", queues, "--pool", "threads",
            "--concurrency", str(concurrency), "--loglevel", "INFO", "--without-gossip", "--without-mingle",
            "--hostname", node]


def store_checked() -> None:
    """Before a web server or a worker starts: a store this host cannot use (unreachable, no bucket,
    wrong credentials) stops the start with its message, not the first job that writes there."""
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management.base import CommandError

    from workbench import storage

    try:
        storage.check_store()
    except ImproperlyConfigured as exc:
        raise CommandError(str(exc), returncode=STORE_REFUSED) from exc


def worker_ready(log: Path) -> Callable[[], bool]:
    return lambda: "ready." in log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start(args: list[str], *, log: Path, ready: Callable[[], bool], what: str, timeout: float = 60,
          **popen: Any) -> subprocess.Popen[bytes]:
    """Start a process with its output in `log` and wait until `ready()`; its log tail on failure."""
    with log.open("wb") as handle:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, **popen)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited at start:\n{log.read_text(errors='replace')[-3000:]}")
        if ready():
            return proc
        time.sleep(0.2)
    stop(proc)
    raise RuntimeError(f"{what} did not start in {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM (a warm shutdown for Celery, a graceful one for uvicorn), then SIGKILL."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
