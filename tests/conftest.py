"""Shared fixtures: named users, a real Celery worker and a real ASGI server as subprocesses."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.db import connection
from PIL import Image

from workbench import processes

ROOT = processes.ROOT


# --- users ----------------------------------------------------------------------------------

@pytest.fixture
def alice(django_user_model):  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_user("alice", password="alice-password")


@pytest.fixture
def bob(django_user_model):  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_user("bob", password="bob-password")


@pytest.fixture
def staff(django_user_model):  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_user("carol", password="carol-password", is_staff=True)


@pytest.fixture
def alice_api(alice):  # type: ignore[no-untyped-def]
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alice).key}")
    return client


@pytest.fixture
def bob_api(bob):  # type: ignore[no-untyped-def]
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=bob).key}")
    return client


# --- image archives -------------------------------------------------------------------------

def make_image(color: tuple[int, int, int], size: tuple[int, int] = (20, 16), fmt: str = "PNG",
               noise_seed: int = 0) -> bytes:
    rng = np.random.default_rng(noise_seed)
    pixels = np.clip(np.array(color) + rng.integers(-20, 21, size=(size[1], size[0], 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def class_images(per_class: int = 10, classes: tuple[str, ...] = ("red", "green", "blue"),
                 fmt: str = "PNG") -> dict[str, bytes]:
    """{'red/0.png': bytes, ...}: small noisy solid-colour images, easy to tell apart."""
    ext = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp", "GIF": "gif", "WEBP": "webp"}[fmt]
    return {f"{name}/{i}.{ext}": make_image(COLORS.get(name, (128, 128, 128)), fmt=fmt, noise_seed=i)
            for name in classes for i in range(per_class)}


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def colour_zip() -> bytes:
    return zip_bytes(class_images())


# --- waiting --------------------------------------------------------------------------------

_WORKERS: list[tuple[subprocess.Popen[bytes], Path]] = []
# How long a test waits for work a worker does (an ingest, a training run, a line in its log). One
# generous limit everywhere: a passing wait ends as soon as the outcome is there, and two suites
# on two cores (CI beside a developer's run) can make any of them slow.
OUTCOME_SECONDS = 240.0


def wait_for(predicate: Callable[[], object], timeout: float = OUTCOME_SECONDS, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for proc, log in _WORKERS:
            # Fail at once, with the reason, rather than time out waiting for a dead worker.
            if proc.poll() is not None:
                raise AssertionError(f"the Celery worker died while waiting for {what}:\n"
                                     f"{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def wait_dataset(pk: int, timeout: float = OUTCOME_SECONDS):  # type: ignore[no-untyped-def]
    from datasets.models import Dataset

    def finished():  # type: ignore[no-untyped-def]
        dataset = Dataset.objects.get(pk=pk)
        return dataset if dataset.is_finished else None

    return wait_for(finished, timeout, f"dataset {pk} to finish ingesting")


@pytest.fixture(autouse=True)
def _worker_idle_after_test(request):  # type: ignore[no-untyped-def]
    """A test that used the worker ends when none of its jobs trains any more.

    A job left training would write its points while the next test's database flush runs: on
    PostgreSQL that TRUNCATE and the job's inserts can deadlock, and the job would also steal the
    worker from the next test. Queued jobs are called off (their task finds them no longer queued);
    training ones are asked to abort and waited for. A job row with no live heartbeat (a test's
    hand-made "running" job) has no task behind it and is not waited for.
    """
    yield
    if "celery_worker" not in request.fixturenames:
        return
    from django.utils import timezone

    from jobs.models import TrainingJob

    TrainingJob.objects.filter(status=TrainingJob.Status.QUEUED).update(status=TrainingJob.Status.ABORTED)
    TrainingJob.objects.filter(status=TrainingJob.Status.RUNNING).update(abort_requested=True)

    def idle() -> bool:
        live_since = timezone.now() - timedelta(seconds=settings.HEARTBEAT_SECONDS * 3)
        return not TrainingJob.objects.filter(status=TrainingJob.Status.RUNNING, heartbeat_at__gte=live_since).exists()

    wait_for(idle, 60, "the worker to stop this test's jobs")


# --- subprocesses: the real worker and the real ASGI server ---------------------------------

def _test_database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(DJANGO_SETTINGS_MODULE="tests.settings", DATABASE_URL=_test_database_url(),
               WORKBENCH_DATA_DIR=str(settings.DATA_DIR), PYTHONUNBUFFERED="1")
    return env


def start_process(args: list[str], log: Path, ready: Callable[[], bool], what: str) -> subprocess.Popen[bytes]:
    return processes.start(args, log=log, ready=ready, what=what, env=_subprocess_env())


class Worker:
    """The session's real Celery worker. Its name stays the same when it is killed and started
    again, so a restart is "the same worker coming back" (workbench.recovery takes back at once)."""

    def __init__(self, name: str, log: Path, queues: str) -> None:
        self.name, self.log, self.queues = name, log, queues
        self.proc: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}
        self.serving: Worker | None = None  # the session's serving worker, beside the main one

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, **env: str) -> None:
        """Start it (with these extra environment variables, e.g. a fault to inject) and wait for it."""
        concurrency = settings.WORKBENCH_SERVING_CONCURRENCY if self.queues == "infer" else 2
        args = processes.worker_command(queues=self.queues, name=self.name, concurrency=concurrency)
        self.proc = processes.start(args, log=self.log, ready=processes.worker_ready(self.log), what="celery worker",
                                    env={**_subprocess_env(), **env})
        self.env = env
        _WORKERS.append((self.proc, self.log))

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: no shutdown code runs."""
        assert self.proc is not None
        _WORKERS.remove((self.proc, self.log))
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and (self.proc, self.log) in _WORKERS:
            _WORKERS.remove((self.proc, self.log))
        if self.proc is not None:
            processes.stop(self.proc)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker) -> Iterator[Worker]:  # type: ignore[no-untyped-def]
    """Real `celery worker` processes on the test database and broker (never eager mode), laid out
    as `make run` lays them out: one for training and background work, and a serving worker for the
    requests a person waits on (`.serving`)."""
    purge = [sys.executable, "-m", "celery", "-A", "workbench", "purge", "-f", "-Q", settings.WORKER_QUEUES]
    subprocess.run(purge, cwd=ROOT, env=_subprocess_env(), capture_output=True, timeout=60)
    roles = settings.WORKER_ROLES
    worker = Worker(f"test-{os.getpid()}", Path(settings.DATA_DIR) / "worker.log", f"{roles['train']},{roles['background']}")
    worker.serving = Worker(f"test-serving-{os.getpid()}", Path(settings.DATA_DIR) / "serving.log", roles["serving"])
    worker.start()
    worker.serving.start()
    yield worker
    worker.serving.stop()
    worker.stop()


@pytest.fixture
def restartable_worker(celery_worker: Worker) -> Iterator[Worker]:
    """The session worker, for a test that kills it; it is running as usual again afterwards."""
    yield celery_worker
    if celery_worker.env or celery_worker.proc is None or celery_worker.proc.poll() is not None:
        if celery_worker.proc is not None and celery_worker.proc.poll() is None:
            celery_worker.kill()
        celery_worker.start()


@pytest.fixture
def restartable_serving(celery_worker: Worker) -> Iterator[Worker]:
    """The session's serving worker, for a test that kills or stops it; running as usual afterwards."""
    serving = celery_worker.serving
    assert serving is not None
    yield serving
    if serving.env or serving.proc is None or serving.proc.poll() is not None:
        if serving.proc is not None and serving.proc.poll() is None:
            serving.kill()
        serving.start()


def wait_in_log(worker: Worker, text: str, timeout: float = OUTCOME_SECONDS) -> None:
    wait_for(lambda: text in worker.log_text(), timeout, f"'{text}' in the worker's log")


class ServerURL(str):
    """The base URL of a server subprocess, with its pid for tests that inspect the process."""

    pid: int


@pytest.fixture(scope="session")
def web_server(django_db_setup, django_db_blocker) -> Iterator[ServerURL]:  # type: ignore[no-untyped-def]
    """The real ASGI app under uvicorn, as `make run` serves it; yields its base URL."""
    port = processes.free_port()
    log = Path(settings.DATA_DIR) / "web.log"
    proc = start_process(processes.web_command("127.0.0.1", port), log, lambda: processes.listening(port), "uvicorn")
    url = ServerURL(f"http://127.0.0.1:{port}")
    url.pid = proc.pid
    yield url
    processes.stop(proc)
