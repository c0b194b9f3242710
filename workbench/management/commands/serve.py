from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from workbench.env import env_int, env_str
from workbench.processes import store_checked, web_command, worker_command
from workbench.supervisor import Child, supervise


class Command(BaseCommand):
    help = ("Start the ASGI web server and the Celery workers (training, background, serving) together and "
            "keep them running: a process that dies is started again; Ctrl-C or SIGTERM stops them all.")

    def add_arguments(self, parser: Any) -> None:
        # Read as the settings read theirs: a bad value stops the start naming its variable.
        parser.add_argument("--host", default=env_str("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=env_int("PORT", 8000, minimum=1))
        parser.add_argument("--concurrency", type=int, default=env_int("WORKER_CONCURRENCY", 2, minimum=1))

    def handle(self, *args: Any, host: str, port: int, concurrency: int, **options: Any) -> None:
        store_checked()
        # Each worker keeps its name across restarts (of itself, and of `serve` on this port), so a
        # restarted worker takes back what its dead process held at once (workbench.recovery). One
        # worker per kind of capacity (settings.WORKER_ROLES): interactive requests never wait
        # behind training, nor ingest behind queued jobs.
        sizes = {"train": concurrency, "background": settings.WORKBENCH_BACKGROUND_CONCURRENCY,
                 "serving": settings.WORKBENCH_SERVING_CONCURRENCY}
        children = [Child("web server", web_command(host, port))] + [
            Child(f"{role} worker", worker_command(queues=queue, name=f"serve-{port}-{role}", concurrency=sizes[role]))
            for role, queue in settings.WORKER_ROLES.items()]
        supervise(children, say=self._say, started=lambda: self.stdout.write(self.style.SUCCESS(
            f"Workbench running at http://{host}:{port}/  (Ctrl-C stops it)")))
        self.stdout.write("Workbench stopped.")

    def _say(self, line: str) -> None:
        self.stderr.write(f"serve: {line}")
        self.stderr.flush()
