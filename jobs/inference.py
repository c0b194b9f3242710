"""Classifying images with a job's snapshot. The web side decodes; a serving worker runs the model (serving/)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from datasets.ingest.images import ImageRejected, ImageSpec, decode
from datasets.ingest.store import png_data_url
from jobs.errors import JobInputError
from jobs.models import TrainingJob
from jobs.selectors import job_snapshot
from serving import client, wire
from training.vision_tasks import vision_task
from workbench import faults


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float


@dataclass(frozen=True)
class Classification:
    predictions: list[Prediction]
    snapshot_epoch: float
    preprocessed_png: str  # a data: URL of the network's input, as the user should see it


def preprocess(*, job: TrainingJob, image: UploadedFile) -> np.ndarray:
    """The uploaded image as the network sees it: the dataset's size, channels and resize mode."""
    dataset = job.dataset
    spec = ImageSpec(dataset.image_width, dataset.image_height, dataset.channels, dataset.resize_mode,
                     settings.WORKBENCH["MAX_IMAGE_PIXELS"])
    try:
        return decode(image, spec, np.random.default_rng(dataset.seed))
    except ImageRejected as exc:
        raise JobInputError(f"The file is not a usable image: {exc}", "image") from None


def job_infer(*, job: TrainingJob, image: UploadedFile, epoch: float | None = None) -> dict[str, Any]:
    """One image through a snapshot (the latest by default), answered as the job's vision task
    answers: {"task", "epoch", "preprocessed", and the task's own fields (classification: predictions)}."""
    snapshot = job_snapshot(job=job, epoch=epoch)
    pixels = preprocess(job=job, image=image)
    outputs = client.ask("jobs.classify", job.backend, str(job.folder / snapshot.path), images=pixels[np.newaxis])
    task = vision_task(job.dataset.task)
    answer = task.infer_answer(np.asarray(outputs[0]), job.dataset.classes)
    return {"task": task.name, **answer, "epoch": snapshot.epoch, "preprocessed": png_data_url(pixels)}


def job_classify(*, job: TrainingJob, image: UploadedFile, epoch: float | None = None) -> Classification:
    answer = job_infer(job=job, image=image, epoch=epoch)
    predictions = [Prediction(p["label"], p["probability"]) for p in answer["predictions"]]
    return Classification(predictions, answer["epoch"], answer["preprocessed"])


def classify_on_worker(*, backend: str, weights: str, images: str) -> list[list[float]]:
    """On a serving worker: the backend's outputs for the packed `images`, batched with concurrent requests."""
    from pathlib import Path

    from serving.work import infer

    faults.pause("classify")
    return infer(backend, Path(weights), wire.unpack(images)).tolist()
