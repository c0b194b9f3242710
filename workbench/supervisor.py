"""Keep the workbench's processes running: what `manage.py serve` (web and workers) and `manage.py
worker` (one worker, on a host of its own) do in the foreground."""
from __future__ import annotations

import ctypes
import ctypes.util
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# A child that dies is started again after BACKOFF[0] seconds. One that dies within STEADY seconds
# of its start did not start at all (a crash loop: bad settings, a missing module): each such death
# doubles the wait, up to BACKOFF[1]. One that ran longer had started (supervisord's `startsecs`),
# and is started again after the short wait.
BACKOFF = (1.0, 30.0)
STEADY = 5.0
STOP_SECONDS = 15  # a child's warm shutdown after SIGTERM, then SIGKILL

Say = Callable[[str], None]


def die_with_parent() -> None:
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
    env: dict[str, str] | None = None  # None: this process's environment
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    wait: float = BACKOFF[0]
    restart_at: float | None = None
    restarts: int = field(default=0)

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, env=self.env, preexec_fn=die_with_parent)
        self.started, self.restart_at = time.monotonic(), None

    def watch(self, say: Say) -> None:
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


def supervise(children: list[Child], *, say: Say, started: Callable[[], None] = lambda: None) -> None:
    """Start `children`, call `started`, and start again each one that dies, until SIGINT or
    SIGTERM; then stop them all (a warm shutdown, SIGKILL after STOP_SECONDS)."""
    die_with_parent()
    for child in children:
        child.start()
    started()
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping:
        for child in children:
            child.watch(say)
        time.sleep(0.2)
    shutdown([c.proc for c in children if c.proc is not None])


def shutdown(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for proc in procs:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
