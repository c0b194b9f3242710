"""Sending work to the Celery workers by task name.

Services queue work by the name its task was given (`jobs.train`, `results.evaluate`), never by
importing the task module, which imports the services back: the name is the interface, routed to
its queue by CELERY_TASK_ROUTES. Request/response work (classify, inspect) goes through
serving.client, which waits for its answer.
"""
from __future__ import annotations

from typing import Any


def enqueue(name: str, *args: Any, queue: str | None = None, expires: float | None = None) -> Any:
    """Send the task called `name` with `args`; its AsyncResult. `expires`: seconds after which a
    worker that picks it up drops it unrun."""
    from workbench.celery import app

    return app.send_task(name, args=list(args), queue=queue, expires=expires)
