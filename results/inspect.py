"""Inspect a snapshot on one image: per-layer activation maps and statistics, weight histograms.

The web side decodes the upload like the dataset; a serving worker runs the model (the web process
never loads torch) and answers through the task's result, as classify does.
"""
from __future__ import annotations

from typing import Any

from django.core.files.uploadedfile import UploadedFile

from datasets.ingest.store import png_data_url
from jobs.errors import JobStateError
from jobs.inference import preprocess
from jobs.models import TrainingJob
from jobs.selectors import job_capabilities
from results.work import done_snapshot
from serving import client, wire
from workbench.storage import data_name


def inspect_image(*, job: TrainingJob, image: UploadedFile, epoch: float | None = None) -> dict[str, Any]:
    """Every layer's activations for this image, its weight statistics and the top-5 predictions."""
    snapshot = done_snapshot(job=job, epoch=epoch, action="inspect")
    if job.dataset.task != "classification":  # its answer is a classifier's: top-5 of one label per image
        raise JobStateError(f"Inspect is not available for {job.dataset.task} yet.")
    if not job_capabilities(job=job).inspect:
        raise JobStateError(f"The {job.backend} backend cannot inspect models.")
    pixels = preprocess(job=job, image=image)
    result = client.ask("results.inspect", job.backend, data_name(job.folder / snapshot.path), images=pixels)
    return {**result, "epoch": snapshot.epoch, "input_png": png_data_url(pixels)}


def inspect_on_worker(*, backend: str, weights: str, image: str) -> dict[str, Any]:
    from pathlib import Path

    from training.backends import backends

    # inspect_image refused a backend that cannot
    from workbench.storage import model_files

    return backends[backend].inspect(model_files(Path(weights)), wire.unpack(image))
