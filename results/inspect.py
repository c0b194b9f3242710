"""Inspect a snapshot on one image: per-layer activation maps and statistics, weight histograms.

The web side decodes the upload like the dataset; the worker runs the model (the web process never
loads torch) and answers through the task's result, as classify does.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from django.core.files.uploadedfile import UploadedFile

from datasets.ingest.store import png_data_url
from jobs.errors import JobStateError
from jobs.inference import preprocess
from jobs.models import Snapshot, TrainingJob
from jobs.selectors import job_capabilities
from results.work import done_snapshot
from workbench.queue import run_on_worker


def inspect_image(*, job: TrainingJob, image: UploadedFile, epoch: float | None = None) -> dict[str, Any]:
    """Every layer's activations for this image, its weight statistics and the top-5 predictions."""
    snapshot = done_snapshot(job=job, epoch=epoch, action="inspect")
    if not job_capabilities(job=job).inspect:
        raise JobStateError(f"The {job.backend} backend cannot inspect models.")
    pixels = preprocess(job=job, image=image)
    result = run_on_worker("results.inspect", pixels, job.pk, snapshot.pk)
    return {**result, "epoch": snapshot.epoch, "input_png": png_data_url(pixels)}


def inspect_on_worker(*, job_id: int, snapshot_id: int, image_path: str) -> dict[str, Any]:
    from training.backends import backends

    snapshot = Snapshot.objects.select_related("job").get(pk=snapshot_id, job_id=job_id)
    backend = backends[snapshot.job.backend]  # inspect_image refused a backend that cannot
    return backend.inspect(snapshot.job.folder / snapshot.path, np.load(image_path))
