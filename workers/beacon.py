"""The worker's side: describe this worker (host, queues, devices, serving capacity) every few seconds.

Started when the Celery worker is ready, on a thread of its own; a worker that stops cleanly
removes its row. Readings of GPUs (NVML) take milliseconds, so a beat never slows training.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from serving import SERVING_QUEUE
from workers import probe, services

log = logging.getLogger(__name__)
_beacon: Beacon | None = None


class Beacon:
    def __init__(self, name: str, queues: list[str], concurrency: int) -> None:
        self.report = services.WorkerReport(name=name, host=socket.gethostname(), pid=os.getpid(), queues=queues,
                                            concurrency=concurrency, started_at=timezone.now())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-beacon", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            services.worker_stopped(name=self.report.name)
        finally:
            connection.close()

    def beat(self) -> None:
        close_old_connections()
        serving = None
        if SERVING_QUEUE in self.report.queues:
            from serving.work import serving_state

            serving = serving_state()
        report = services.WorkerReport(**{**self.report.__dict__, "devices": probe.devices(), "serving": serving})
        services.worker_report(report=report)

    def _run(self) -> None:
        try:
            while True:
                try:
                    self.beat()
                except Exception:
                    log.exception("could not report this worker; trying again")
                if self._stop.wait(settings.WORKBENCH_WORKER_REPORT_SECONDS):
                    return
        finally:
            connection.close()


@worker_ready.connect
def start_beacon(sender: Any = None, **kwargs: Any) -> None:
    global _beacon
    queues = sorted(queue.name for queue in sender.app.amqp.queues.consume_from.values()) if sender else []
    concurrency = getattr(getattr(sender, "pool", None), "limit", None) or getattr(sender, "concurrency", 1) or 1
    _beacon = Beacon(getattr(sender, "hostname", "") or socket.gethostname(), queues, int(concurrency))
    _beacon.start()


@worker_shutdown.connect
def stop_beacon(**kwargs: Any) -> None:
    if _beacon is not None:
        _beacon.stop()
