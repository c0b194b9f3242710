from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from workbench.processes import web_command, worker_command


def _die_with_parent() -> None:
    """Ask Linux for SIGTERM when our parent dies, so `kill <make>` leaves no orphans behind."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: Ctrl-C still reaches the whole process group


class Command(BaseCommand):
    help = "Start the ASGI web server and a Celery worker together; stop both on Ctrl-C or SIGTERM."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--concurrency", type=int, default=int(os.environ.get("WORKER_CONCURRENCY", "2")))

    def handle(self, *args: Any, host: str, port: int, concurrency: int, **options: Any) -> None:
        web = web_command(host, port)
        worker = worker_command(queues=settings.WORKER_QUEUES, name=f"worker-{os.getpid()}", concurrency=concurrency)
        _die_with_parent()
        procs = [subprocess.Popen(web, preexec_fn=_die_with_parent), subprocess.Popen(worker, preexec_fn=_die_with_parent)]
        self.stdout.write(self.style.SUCCESS(f"Workbench running at http://{host}:{port}/  (Ctrl-C stops it)"))
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping and all(p.poll() is None for p in procs):
            time.sleep(0.2)
        self._shutdown(procs)

    def _shutdown(self, procs: list[subprocess.Popen[bytes]]) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
        self.stdout.write("Workbench stopped.")
