"""`make worker` (`manage.py worker`): one Celery worker, no web server, named and placed by WORKER_*."""
from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.conftest import ROOT, _subprocess_env, wait_for
from workbench import storage
from workbench.management.commands import serve, worker

WORKER_VARIABLES = ("WORKER_NAME", "WORKER_QUEUES", "WORKER_GPUS", "WORKER_CONCURRENCY", "CUDA_VISIBLE_DEVICES")


@pytest.fixture
def started(monkeypatch) -> list:  # type: ignore[type-arg]
    """The children the command would supervise, recorded instead of started."""
    for name in WORKER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    children: list = []  # type: ignore[type-arg]
    monkeypatch.setattr(worker, "supervise", lambda given, **kwargs: children.extend(given))
    return children


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_it_starts_one_worker_on_every_queue_named_after_this_host_by_default(started):
    from django.conf import settings

    call_command("worker", stdout=io.StringIO())

    [child] = started
    assert child.args[:5] == [sys.executable, "-m", "celery", "-A", "workbench"] and "uvicorn" not in child.args
    assert option(child.args, "--queues") == settings.WORKER_QUEUES == "train,background,infer"
    assert option(child.args, "--hostname") == f"worker-{socket.gethostname()}@%h"
    assert option(child.args, "--concurrency") == "2"
    assert "CUDA_VISIBLE_DEVICES" not in child.env, "no WORKER_GPUS: every GPU it finds"


def test_it_takes_its_name_queues_gpus_and_concurrency_from_the_environment(started, monkeypatch):
    monkeypatch.setenv("WORKER_NAME", "gpu-b")
    monkeypatch.setenv("WORKER_QUEUES", "train, background")
    monkeypatch.setenv("WORKER_GPUS", "0, 1")
    monkeypatch.setenv("WORKER_CONCURRENCY", "4")

    call_command("worker", stdout=io.StringIO())

    [child] = started
    assert option(child.args, "--hostname") == "gpu-b@%h"
    assert option(child.args, "--queues") == "train,background"
    assert option(child.args, "--concurrency") == "4"
    assert child.env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert child.env["PATH"] == os.environ["PATH"], "the rest of its environment is this process's"


def test_a_name_with_a_host_is_the_whole_node_name(started, monkeypatch):
    monkeypatch.setenv("WORKER_NAME", "gpu-b@rack-3")

    call_command("worker", stdout=io.StringIO())

    assert option(started[0].args, "--hostname") == "gpu-b@rack-3"


def test_an_empty_gpu_list_leaves_it_every_gpu_it_finds(started, monkeypatch):
    monkeypatch.setenv("WORKER_GPUS", " , ")

    call_command("worker", stdout=io.StringIO())

    assert "CUDA_VISIBLE_DEVICES" not in started[0].env


def test_it_takes_gpu_ids_as_cuda_names_them(started, monkeypatch):
    monkeypatch.setenv("WORKER_GPUS", "GPU-5c6b2e1a-0f1d-4f0e-9d5e-1b7a2c3d4e5f")

    call_command("worker", stdout=io.StringIO())

    assert started[0].env["CUDA_VISIBLE_DEVICES"] == "GPU-5c6b2e1a-0f1d-4f0e-9d5e-1b7a2c3d4e5f"


@pytest.mark.parametrize("variable, value, words", [
    ("WORKER_QUEUES", "train,gpu", "WORKER_QUEUES must name some of train, background, infer"),
    ("WORKER_QUEUES", " , ", "WORKER_QUEUES must name some of"),
    ("WORKER_GPUS", "0,cuda:1", "WORKER_GPUS must be GPU indices such as 0,1"),
    ("WORKER_NAME", "gpu b", "WORKER_NAME must be one word"),
])
def test_it_refuses_a_bad_value_naming_its_variable(started, monkeypatch, variable, value, words):
    monkeypatch.setenv(variable, value)

    with pytest.raises(CommandError, match=words):
        call_command("worker", stdout=io.StringIO())
    assert started == []


def test_it_refuses_a_concurrency_that_is_not_a_number(started, monkeypatch):
    monkeypatch.setenv("WORKER_CONCURRENCY", "many")

    with pytest.raises(ImproperlyConfigured, match="WORKER_CONCURRENCY"):
        worker.Command().create_parser("manage.py", "worker")


def _refusing_store(monkeypatch) -> str:  # type: ignore[no-untyped-def]
    message = "WORKBENCH_STORAGE: the bucket 'workbench' does not exist at http://minio:9000"

    def check_store() -> None:
        raise ImproperlyConfigured(message)

    monkeypatch.setattr(storage, "check_store", check_store)
    return message


@pytest.mark.parametrize("command", [worker.Command, serve.Command])
def test_it_exits_with_the_store_s_message_before_starting_anything(started, monkeypatch, capsys, command):
    message = _refusing_store(monkeypatch)
    supervised: list = []  # type: ignore[type-arg]
    monkeypatch.setattr(serve, "supervise", lambda given, **kwargs: supervised.extend(given))

    with pytest.raises(SystemExit) as exited:
        command().run_from_argv(["manage.py", command.__module__.rsplit(".", 1)[1]])

    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert started == [] and supervised == [], "no process was started"


def _children(pid: int) -> list[int]:
    path = f"/proc/{pid}/task/{pid}/children"
    return [int(p) for p in open(path).read().split()] if os.path.exists(path) else []


def _environ(pid: int) -> dict[str, str]:
    pairs = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    return dict(p.decode().split("=", 1) for p in pairs if b"=" in p)


@pytest.mark.django_db(transaction=True)
def test_make_worker_runs_one_celery_worker_on_its_gpus_and_stops_it_on_sigterm(tmp_path):
    if not os.path.exists("/proc/self/task"):
        pytest.skip("needs /proc to find the child process")
    log = tmp_path / "worker.log"
    env = {**_subprocess_env(), "WORKER_NAME": f"hosts-test-{os.getpid()}", "WORKER_QUEUES": "infer",
           "WORKER_GPUS": "1", "WORKER_CONCURRENCY": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "manage.py", "worker"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "ready." in log.read_text(errors="replace"), 60, "the worker to start")
        [child] = _children(proc.pid)

        assert _environ(child)["CUDA_VISIBLE_DEVICES"] == "1"
        assert f"hosts-test-{os.getpid()}@{socket.gethostname()} ready." in log.read_text(errors="replace")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "Worker stopped." in log.read_text(errors="replace")
        assert not os.path.exists(f"/proc/{child}") or open(f"/proc/{child}/stat").read().split()[2] == "Z"
    finally:
        if proc.poll() is None:
            proc.kill()
