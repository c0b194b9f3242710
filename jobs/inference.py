"""Inference with a job's snapshot (classify, segment, detect). The web side decodes; a serving worker runs the model (serving/)."""
from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from datasets.ingest.images import ImageRejected, ImageSpec, decode_sized, scaled_size
from datasets.ingest.store import png_data_url
from jobs.errors import JobInputError
from jobs.models import TrainingJob
from jobs.selectors import job_snapshot
from serving import client, wire
from training.vision_tasks import vision_task
from workbench import faults
from workbench.storage import data_name


def preprocess(*, job: TrainingJob, image: UploadedFile) -> np.ndarray:
    """The uploaded image as the network sees it: the dataset's size, channels and resize mode."""
    return _decoded(job, image)[0]


def _decoded(job: TrainingJob, image: UploadedFile) -> tuple[np.ndarray, tuple[int, int], ImageSpec]:
    """`preprocess`, the upload's own (width, height), and the spec it was resized by."""
    dataset = job.dataset
    spec = ImageSpec(dataset.image_width, dataset.image_height, dataset.channels, dataset.resize_mode,
                     settings.WORKBENCH["MAX_IMAGE_PIXELS"])
    try:
        pixels, own = decode_sized(image, spec, np.random.default_rng(dataset.seed))
    except ImageRejected as exc:
        raise JobInputError(f"The file is not a usable image: {exc}", "image") from None
    return pixels, own, spec


def job_infer(*, job: TrainingJob, image: UploadedFile, epoch: float | None = None,
              options: dict[str, Any] | None = None) -> dict[str, Any]:
    """One image through a snapshot (the latest by default), answered as the job's vision task
    answers: {"task", "epoch", "preprocessed", and the task's own fields (classification: predictions;
    segmentation: width, height, mask, classes, class_pixels, the mask at the upload's own size;
    detection: width, height, boxes in the upload's own pixels)}. `options`: the task's
    `infer_options` given (detection's score_threshold); the others' are not asked of it."""
    snapshot = job_snapshot(job=job, epoch=epoch)
    pixels, (width, height), spec = _decoded(job, image)
    outputs = client.infer("jobs.classify", job.backend, data_name(job.folder / snapshot.path), pixels[np.newaxis])
    task = vision_task(job.dataset.task)
    given = {name: value for name, value in (options or {}).items() if name in task.infer_options and value is not None}
    answer = task.infer_answer(outputs[0], job.dataset.classes, **given)
    answer = task.answer_to_image(answer, width, height, scaled_size(width, height, spec), (spec.width, spec.height))
    return {"task": task.name, **answer, "epoch": snapshot.epoch, "preprocessed": png_data_url(pixels)}


def classify_on_worker(*, backend: str, weights: str, images: str) -> list[list[float]] | str:
    """On a serving worker: the backend's outputs for the packed `images`, batched with concurrent requests.
    Per-pixel outputs (segmentation's (N, classes, H, W)) go back packed: as JSON lists a 128x96 image
    of 21 classes would be ~5 MB of text; packed float32 is a quarter of that."""
    from pathlib import Path

    from serving.work import infer

    faults.pause("classify")
    outputs = infer(backend, Path(weights), wire.unpack(images))
    return wire.pack(outputs.astype(np.float32)) if outputs.ndim > 2 else outputs.tolist()


# --- the segment page: the upload with its mask over it -------------------------------------------

PAGE_LONGEST = 768  # the longest side the page shows an upload at; its mask is drawn at the same size


def segmentation_overlay(*, answer: dict[str, Any], image: UploadedFile, colours: list[list[int]]) -> dict[str, str]:
    """The upload (at most PAGE_LONGEST on its longest side) and the answer's mask in the classes'
    colours at that same size, as data: URLs the page stacks: {"photo", "overlay"}."""
    from datasets.ingest.store import coloured_mask_png
    from training.vision_tasks.segmentation.metrics import mask_from_png, mask_to_size

    photo = _page_photo(image)
    mask = mask_to_size(mask_from_png(answer["mask"]), photo.width, photo.height)
    return {"photo": _jpeg_url(photo),
            "overlay": "data:image/png;base64," + base64.b64encode(coloured_mask_png(mask, colours)).decode()}


def page_photo(*, image: UploadedFile) -> str:
    """The upload at most PAGE_LONGEST on its longest side, as a JPEG data: URL (the detect page draws
    the answer's boxes over it, scaled from the upload's own pixels to the size it is shown at)."""
    return _jpeg_url(_page_photo(image))


def _page_photo(image: UploadedFile):  # type: ignore[no-untyped-def]
    from PIL import Image, ImageOps

    from datasets.ingest.images import FORMATS

    image.seek(0)
    with Image.open(image, formats=FORMATS) as opened:
        photo = (ImageOps.exif_transpose(opened) or opened).convert("RGB")
    photo.thumbnail((PAGE_LONGEST, PAGE_LONGEST))  # keeps the aspect: what is drawn over it follows
    return photo


def _jpeg_url(photo: Any) -> str:
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
