"""The serving worker's side: a backend's `infer`, batched across concurrent requests.

The Celery tasks of the `infer` queue (jobs.classify, results.classify_compressed, ...) call
`infer`; the backend keeps the model warm (training.warm), and this module's Batcher runs
concurrent requests for one model as one batch.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from workbench.storage import model_files

_batcher: Any = None
_lock = threading.Lock()


def batcher() -> Any:
    global _batcher
    with _lock:
        if _batcher is None:
            from serving.batching import Batcher

            _batcher = Batcher(settings.WORKBENCH_SERVING_BATCH_WINDOW_MS / 1000, settings.WORKBENCH_SERVING_MAX_BATCH)
        return _batcher


def infer(backend_alias: str, weights: Path, images: np.ndarray) -> np.ndarray:
    """The backend's outputs for `images` with the model at `weights`, batched with concurrent requests for it."""
    from training.backends import backends

    backend = backends[backend_alias]
    weights = model_files(weights)  # from the store, once per host, when another host trained it
    return batcher().run((backend_alias, str(weights)), images, lambda batch: backend.infer(weights, batch))  # type: ignore[no-any-return]


def serving_state() -> dict[str, Any]:
    """What the Workers page shows of a serving worker: its device, the models it holds warm, their bytes."""
    from training.backends import backends

    models = [{**model, "backend": alias} for alias in backends.loaded() for model in backends[alias].warm_models()]
    stats = batcher().stats
    return {"device": settings.WORKBENCH_SERVING_DEVICE, "models": models,
            "bytes": sum(model["bytes"] for model in models),
            "capacity_bytes": settings.WORKBENCH_SERVING_CACHE_MB * 1024**2,
            "batches": stats.batches, "requests": stats.requests, "largest_batch": stats.largest}


def configure_dedicated_worker(queues: set[str], conf: Any) -> None:
    """A worker that consumes the serving queue alone (celeryd_init, before it connects or loads
    torch): on the embedded broker it looks for requests every WORKBENCH_SERVING_POLL_SECONDS
    instead of every 0.05 s, and its forward passes use WORKBENCH_SERVING_THREADS threads. A worker
    that also trains keeps the training settings."""
    import os

    from serving import SERVING_QUEUE

    if queues != {SERVING_QUEUE}:
        return
    options = dict(conf.broker_transport_options or {})
    if "polling_interval" in options:
        options["polling_interval"] = settings.WORKBENCH_SERVING_POLL_SECONDS
        conf.broker_transport_options = options
    os.environ["OMP_NUM_THREADS"] = str(settings.WORKBENCH_SERVING_THREADS)
