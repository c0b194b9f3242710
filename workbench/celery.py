from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import celeryd_init, worker_ready

from workbench import broker

broker.register()

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "workbench.settings")

app = Celery("workbench")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def drop_expired_results(**kwargs: Any) -> None:
    """Request/response answers (classify, inspect) are forgotten as soon as they are read; one whose
    asker timed out stays. There is no beat to run Celery's daily cleanup, so each worker start
    drops those older than CELERY_RESULT_EXPIRES (Redis expires its keys by itself)."""
    app.backend.cleanup()


@celeryd_init.connect
def worker_role_settings(conf: Any = None, options: Any = None, **kwargs: Any) -> None:
    """Settings that follow from what a worker consumes: one for the serving queue alone polls the
    embedded broker fast (serving.work); one that only trains yields the CPU to the web and to
    the serving and background workers (WORKBENCH_TRAIN_NICE), so a person's request is not slowed
    by training on the same host."""
    from django.conf import settings

    from serving.work import configure_dedicated_worker

    queues = (options or {}).get("queues") or []
    if isinstance(queues, str):
        queues = queues.split(",")
    consumed = {q.strip() for q in queues if q.strip()}
    configure_dedicated_worker(consumed, conf)
    if consumed == {settings.WORKER_ROLES["train"]} and settings.WORKBENCH_TRAIN_NICE:
        os.nice(settings.WORKBENCH_TRAIN_NICE)  # a worker that also ingests or serves keeps its priority
