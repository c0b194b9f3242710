"""The set-up commands `make run` uses: the admin user, and web + worker started and stopped together."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from tests.conftest import ROOT, _subprocess_env, wait_for
from workbench import processes
from workbench.processes import free_port


@pytest.mark.django_db
def test_it_creates_the_admin_once_with_a_generated_password_shown_once(monkeypatch):
    monkeypatch.delenv("WORKBENCH_ADMIN_PASSWORD", raising=False)
    first, second = io.StringIO(), io.StringIO()

    call_command("ensure_admin", stdout=first)
    call_command("ensure_admin", stdout=second)

    password = first.getvalue().split("password: ")[1].split()[0]
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(password)
    assert second.getvalue() == ""


@pytest.mark.django_db
def test_it_takes_the_admin_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("WORKBENCH_ADMIN_USER", "boss")
    monkeypatch.setenv("WORKBENCH_ADMIN_PASSWORD", "a-long-secret")

    call_command("ensure_admin", stdout=io.StringIO())

    assert get_user_model().objects.get(username="boss").check_password("a-long-secret")


def _children(pid: int) -> list[int]:
    path = f"/proc/{pid}/task/{pid}/children"
    return [int(p) for p in open(path).read().split()] if os.path.exists(path) else []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.django_db(transaction=True)
def test_it_serves_web_and_the_three_workers_and_stops_them_all_on_sigterm():
    if not os.path.exists("/proc/self/task"):
        pytest.skip("needs /proc to find the child processes")
    port = free_port()
    env = {**_subprocess_env(), "PORT": str(port)}
    serve = subprocess.Popen([sys.executable, "manage.py", "serve"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def healthy() -> bool:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health/", timeout=2).status == 200
            except OSError:
                return False

        wait_for(healthy, 60, "the web server to answer")
        children = _children(serve.pid)
        assert len(children) == 4, "web, and the training, background and serving workers"
        assert sorted(c for c in map(_cmdline, children) if "celery" in c) == sorted(
            c for c in map(_cmdline, children) if any(f"--queues {q} " in c for q in ("train", "background", "infer")))

        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(c) for c in children), "a child outlived serve"
    finally:
        if serve.poll() is None:
            serve.kill()


def _cmdline(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def _child(serve: subprocess.Popen[bytes], marker: str) -> int | None:
    return next((c for c in _children(serve.pid) if marker in _cmdline(c) and _alive(c)), None)


class HealthWatch(threading.Thread):
    """Asks the web server for its health every 50 ms and counts the answers that were not 200."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url, self.asked, self.failed = f"http://127.0.0.1:{port}/api/v1/health/", 0, []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            self.asked += 1
            try:
                urllib.request.urlopen(self.url, timeout=60).read()  # slow under load is not down: refused is
            except OSError as exc:
                self.failed.append(repr(exc))


@pytest.mark.django_db(transaction=True)
def test_serve_starts_a_killed_serving_worker_again_while_the_web_goes_on_answering(tmp_path):
    if not os.path.exists("/proc/self/task"):
        pytest.skip("needs /proc to find the child processes")
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        serve = subprocess.Popen([sys.executable, "manage.py", "serve"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                 env={**_subprocess_env(), "PORT": str(port)})
    try:
        wait_for(lambda: log.read_text().count("ready.") == 3, 60, "the three workers to start")
        worker = _child(serve, "--queues infer ")
        watch = HealthWatch(port)
        watch.start()

        os.kill(worker, signal.SIGKILL)  # type: ignore[arg-type]
        wait_for(lambda: log.read_text().count("ready.") == 4, 60, "the serving worker to start again")
        watch.done.set()
        watch.join()

        assert f"serving worker (pid {worker}) stopped (killed by SIGKILL); starting it again in 1 s" in log.read_text()
        assert _child(serve, "--queues infer ") not in (None, worker)
        assert watch.asked > 0 and watch.failed == [], "the web server answered all along"
        web = _child(serve, "uvicorn")
        os.kill(web, signal.SIGKILL)  # type: ignore[arg-type]
        wait_for(lambda: _child(serve, "uvicorn") not in (None, web) and processes.listening(port), 60,
                 "the web server to start again")
        assert f"web server (pid {web}) stopped (killed by SIGKILL)" in log.read_text()
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0


def test_serve_waits_longer_each_time_for_a_child_that_dies_at_every_start():
    from workbench.supervisor import Child

    said: list[str] = []
    child = Child("crasher", [sys.executable, "-c", "raise SystemExit(3)"])
    child.start()
    wait_for(lambda: (child.watch(said.append), len(said) >= 5)[1], 30, "three restarts")

    assert "crasher (pid" in said[0] and "stopped (exit status 3); starting it again in 1 s" in said[0]
    assert said[1].startswith("crasher started again")
    assert "starting it again in 2 s" in said[2], "it died at once: a crash loop waits longer each time"
    assert "starting it again in 4 s" in said[4]
