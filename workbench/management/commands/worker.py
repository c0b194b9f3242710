from __future__ import annotations

import os
import re
import socket
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from workbench.env import env_int, env_str
from workbench.processes import store_checked, worker_command
from workbench.supervisor import Child, supervise

# What CUDA_VISIBLE_DEVICES takes: indices, or the GPU-/MIG- identifiers nvidia-smi -L prints.
GPU = re.compile(r"\d+|(GPU|MIG)-[0-9A-Za-z/-]+")


def worker_queues(raw: str) -> str:
    """The queues a worker consumes, each one the workbench routes work to."""
    queues = [q.strip() for q in raw.split(",") if q.strip()]
    known = list(settings.WORKER_ROLES.values())
    unknown = [q for q in queues if q not in known]
    if not queues or unknown:
        raise CommandError(f"WORKER_QUEUES must name some of {', '.join(known)} (comma-separated), got {raw!r}")
    return ",".join(dict.fromkeys(queues))


def worker_gpus(raw: str) -> list[str]:
    """The GPUs a worker may use, as CUDA_VISIBLE_DEVICES names them; none: all it finds."""
    picked = [g.strip() for g in raw.split(",") if g.strip()]
    if bad := [g for g in picked if not GPU.fullmatch(g)]:
        raise CommandError(f"WORKER_GPUS must be GPU indices such as 0,1 (or GPU-/MIG- ids), got {raw!r}: "
                           f"{', '.join(bad)}")
    return picked


def worker_env(gpus: list[str]) -> dict[str, str]:
    """This process's environment, with the worker's GPUs (if it names some) as CUDA_VISIBLE_DEVICES."""
    return {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(gpus)} if gpus else dict(os.environ)


class Command(BaseCommand):
    help = ("Start one Celery worker and no web server, in the foreground, and keep it running: what another "
            "host runs against the shared PostgreSQL, Redis and store (`make worker`). It does not migrate: "
            "the web host's `make run` does. Ctrl-C or SIGTERM stops it.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--name", default=env_str("WORKER_NAME", f"worker-{socket.gethostname()}"),
                            help="its Celery node name: <name>@<host> (WORKER_NAME; default worker-<host>)")
        parser.add_argument("--queues", default=env_str("WORKER_QUEUES", settings.WORKER_QUEUES),
                            help=f"queues it consumes (WORKER_QUEUES; default {settings.WORKER_QUEUES})")
        parser.add_argument("--gpus", default=env_str("WORKER_GPUS", ""),
                            help="GPUs it may use, e.g. 0,1 (WORKER_GPUS; default: all it finds)")
        parser.add_argument("--concurrency", type=int, default=env_int("WORKER_CONCURRENCY", 2, minimum=1),
                            help="tasks it runs at once (WORKER_CONCURRENCY; default 2)")

    def handle(self, *args: Any, name: str, queues: str, gpus: str, concurrency: int, **options: Any) -> None:
        if not name.strip() or any(c.isspace() for c in name):
            raise CommandError(f"WORKER_NAME must be one word (it names the worker's rows), got {name!r}")
        if concurrency < 1:
            raise CommandError(f"WORKER_CONCURRENCY must be at least 1, got {concurrency}")
        consumed, picked = worker_queues(queues), worker_gpus(gpus)
        child = Child("worker", worker_command(queues=consumed, name=name, concurrency=concurrency),
                      env=worker_env(picked))
        store_checked()
        on_gpus = f" on GPUs {','.join(picked)}" if picked else ""

        def started() -> None:
            pid = child.proc.pid  # type: ignore[union-attr]
            line = f"Worker {name} consuming {consumed}{on_gpus} (pid {pid}; Ctrl-C stops it)"
            self.stdout.write(self.style.SUCCESS(line))

        supervise([child], say=self._say, started=started)
        self.stdout.write("Worker stopped.")

    def _say(self, line: str) -> None:
        self.stderr.write(f"worker: {line}")
        self.stderr.flush()
