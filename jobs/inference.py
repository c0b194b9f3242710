"""Classifying images with a job's snapshot. The web side decodes; the worker runs the model."""
from __future__ import annotations

import base64
import io
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from datasets.ingest.images import ImageRejected, ImageSpec, decode
from datasets.ingest.store import to_pil
from jobs.models import Snapshot, TrainingJob
from jobs.selectors import job_snapshot
from jobs.services import JobInputError
from workbench import faults

TOP_K = 5
# How often a waiting request looks for the worker's answer; Celery's default (0.5 s) would be
# most of a warm classify's time.
RESULT_POLL = 0.02


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


class WorkerUnavailable(Exception):
    """No worker answered (504) or the worker failed (503); the API answers with `http_status`."""

    def __init__(self, message: str, http_status: int) -> None:
        super().__init__(message)
        self.http_status = http_status


def run_on_worker(task: Any, pixels: np.ndarray, *args: Any) -> Any:
    """Hand `pixels` to a request/response task on the worker and wait for its answer.

    The pixels travel as a temporary .npy file (web and workers share the data folder), its path
    the task's last argument. The stored answers are forgotten once read, so these tasks leave
    nothing in the result store; one whose asker timed out expires (see workbench.celery).
    """
    path = Path(settings.FILE_UPLOAD_TEMP_DIR) / f"{task.name}-{uuid.uuid4().hex}.npy"
    np.save(path, pixels)
    try:
        return ask_worker(task, *args, str(path))
    finally:
        path.unlink(missing_ok=True)


def ask_worker(task: Any, *args: Any) -> Any:
    """A request/response task's answer (resent once, then WorkerUnavailable); forgotten once read."""
    sent: list[Any] = []
    try:
        return _first_answer(task, list(args), sent)
    finally:
        for result in sent:
            result.forget()


def _first_answer(task: Any, args: list[Any], sent: list[Any]) -> Any:
    """Wait for an answer; ask once more after WORKBENCH_REQUEST_RESEND_SECONDS, because a worker
    that dies holding a request takes it with it (a second answer is the same answer)."""
    timeout, resend = settings.WORKBENCH_REQUEST_TIMEOUT, settings.WORKBENCH_REQUEST_RESEND_SECONDS
    started = time.monotonic()
    sent.append(_send(task, args))
    while (waited := time.monotonic() - started) < timeout:
        for result in sent:
            if result.ready():
                return _answer(result)
        if len(sent) == 1 and waited >= resend:
            sent.append(_send(task, args))
        time.sleep(RESULT_POLL)
    raise WorkerUnavailable(f"No worker answered within {timeout:g} s. Is a worker running? Try again.", 504)


def _send(task: Any, args: list[Any]) -> Any:
    try:
        return task.delay(*args)
    except Exception as exc:
        raise WorkerUnavailable(f"The request could not be queued for a worker ({type(exc).__name__}: {exc}).",
                                503) from None


def _answer(result: Any) -> Any:
    try:
        return result.get(timeout=5, interval=RESULT_POLL)
    except Exception as exc:
        raise WorkerUnavailable(f"The worker could not do it ({type(exc).__name__}: {exc}).", 503) from None


def job_classify(*, job: TrainingJob, image: UploadedFile, epoch: float | None = None) -> Classification:
    from jobs.tasks import classify_images

    snapshot = job_snapshot(job=job, epoch=epoch)
    pixels = preprocess(job=job, image=image)
    answer = run_on_worker(classify_images, pixels[np.newaxis], job.pk, snapshot.pk)
    probabilities = np.asarray(answer[0])
    return Classification(top_k(probabilities, job.dataset.classes), snapshot.epoch, png_data_url(pixels))


def top_k(probabilities: np.ndarray, classes: list[str], k: int = TOP_K) -> list[Prediction]:
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [Prediction(classes[i], float(probabilities[i])) for i in order]


def png_data_url(chw: np.ndarray) -> str:
    buf = io.BytesIO()
    to_pil(chw).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def classify_on_worker(*, job_id: int, snapshot_id: int, images_path: str) -> list[list[float]]:
    from jobs.backends import backends

    snapshot = Snapshot.objects.select_related("job").get(pk=snapshot_id, job_id=job_id)
    faults.pause("classify")
    images = np.load(images_path)
    probabilities = backends[snapshot.job.backend].infer(snapshot.job.folder / snapshot.path, images)
    return probabilities.tolist()
