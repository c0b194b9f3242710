from __future__ import annotations

import ctypes
import ctypes.util
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from workbench.env import env_int, env_str
from workbench.processes import web_command, worker_command

# A child that dies is started again after BACKOFF[0] seconds. One that dies within STEADY seconds
# of its start did not start at all (a crash loop: bad settings, a missing module): each such death
# doubles the wait, up to BACKOFF[1]. One that ran longer had started (supervisord's `startsecs`),
# and is started again after the short wait.
BACKOFF = (1.0, 30.0)
STEADY = 5.0


def _die_with_parent() -> None:
    """Ask Linux for SIGTERM when our parent dies, so `kill <make>` leaves no orphans behind."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: Ctrl-C still reaches the whole process group


def exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


@dataclass
class Child:
    """One supervised process: started again after a backoff whenever it dies."""

    name: str
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    wait: float = BACKOFF[0]
    restart_at: float | None = None
    restarts: int = field(default=0)

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, preexec_fn=_die_with_parent)
        self.started, self.restart_at = time.monotonic(), None

    def watch(self, say: Any) -> None:
        """Notice a death and schedule the restart; restart when its time has come."""
        now = time.monotonic()
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.restarts += 1
                self.start()
                say(f"{self.name} started again (pid {self.proc.pid}, restart {self.restarts}).")  # type: ignore[union-attr]
            return
        code = self.proc.poll() if self.proc is not None else None
        if code is None:
            return
        if now - self.started >= STEADY:
            self.wait = BACKOFF[0]
        self.restart_at = now + self.wait
        say(f"{self.name} (pid {self.proc.pid}) stopped ({exit_reason(code)}); starting it again in "  # type: ignore[union-attr]
            f"{self.wait:g} s. The other processes go on.")
        self.wait = min(self.wait * 2, BACKOFF[1])


class Command(BaseCommand):
    help = ("Start the ASGI web server and the Celery workers (training, background, serving) together and "
            "keep them running: a process that dies is started again; Ctrl-C or SIGTERM stops them all.")

    def add_arguments(self, parser: Any) -> None:
        # Read as the settings read theirs: a bad value stops the start naming its variable.
        parser.add_argument("--host", default=env_str("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=env_int("PORT", 8000, minimum=1))
        parser.add_argument("--concurrency", type=int, default=env_int("WORKER_CONCURRENCY", 2, minimum=1))

    def handle(self, *args: Any, host: str, port: int, concurrency: int, **options: Any) -> None:
        # Each worker keeps its name across restarts (of itself, and of `serve` on this port), so a
        # restarted worker takes back what its dead process held at once (workbench.recovery). One
        # worker per kind of capacity (settings.WORKER_ROLES): interactive requests never wait
        # behind training, nor ingest behind queued jobs.
        sizes = {"train": concurrency, "background": settings.WORKBENCH_BACKGROUND_CONCURRENCY,
                 "serving": settings.WORKBENCH_SERVING_CONCURRENCY}
        children = [Child("web server", web_command(host, port))] + [
            Child(f"{role} worker", worker_command(queues=queue, name=f"serve-{port}-{role}", concurrency=sizes[role]))
            for role, queue in settings.WORKER_ROLES.items()]
        _die_with_parent()
        for child in children:
            child.start()
        self.stdout.write(self.style.SUCCESS(f"Workbench running at http://{host}:{port}/  (Ctrl-C stops it)"))
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping:
            for child in children:
                child.watch(self._say)
            time.sleep(0.2)
        self._shutdown([c.proc for c in children if c.proc is not None])

    def _say(self, line: str) -> None:
        self.stderr.write(f"serve: {line}")
        self.stderr.flush()

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
