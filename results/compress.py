"""Compress a snapshot: magnitude pruning with a short fine-tune, or int8 quantization.

The result page shows the trade: size and validation accuracy before and after. The compressed
model lives in the job folder under compressed/<id>/ and can still classify images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils.text import slugify

from jobs.inference import preprocess
from jobs.models import TrainingJob
from jobs.selectors import job_capabilities
from jobs.services import JobInputError, JobStateError, training_plan
from results.models import Compression
from results.work import claimed, done_snapshot, enqueue, offered_choice
from serving import client, wire
from training.contract import SilentReporter
from training.vision_tasks import vision_task
from workbench import cache
from workbench.storage import data_name, model_files, retrying, store


@dataclass(frozen=True)
class Param:
    default: float
    low: float
    high: float
    integer: bool = False


# The methods the product knows, with their parameters; a job is offered those its backend declares.
METHODS: dict[str, dict[str, Param]] = {
    "prune": {"amount": Param(0.5, 0.05, 0.95), "epochs": Param(1, 0, 20, integer=True)},
    "quantize_dynamic": {},
    "quantize_static": {},
}
METHOD_TITLES = {"prune": "Magnitude pruning + fine-tune", "quantize_dynamic": "int8 dynamic quantization",
                 "quantize_static": "int8 static quantization"}


def offered_methods(*, job: TrainingJob) -> list[tuple[str, str]]:
    """(method, title) for each compression method the job's backend can run."""
    return [(m, METHOD_TITLES[m]) for m in job_capabilities(job=job).compress_methods if m in METHODS]


def compression_start(*, job: TrainingJob, method: str, params: dict[str, Any] | None = None,
                      epoch: float | None = None) -> Compression:
    """A new queued compression of the chosen snapshot (latest by default)."""
    if job.dataset.task != "classification":  # its fine-tune and its before/after figures are a classifier's
        raise JobStateError(f"Compression is not available for {job.dataset.task} yet.")
    offered_choice(value=method, offered=[name for name, _ in offered_methods(job=job)], known=METHODS,
                   unknown="Unknown method", cannot=f"The {job.backend} backend cannot compress with", field="method")
    checked = compression_params(method, params or {})
    snapshot = done_snapshot(job=job, epoch=epoch, action="compress")
    with transaction.atomic():
        compression = Compression.objects.create(job=job, snapshot=snapshot, method=method, params=checked)
        enqueue("results.compress", compression.pk)
    return compression


def compression_params(method: str, given: dict[str, Any]) -> dict[str, Any]:
    """The method's parameters with defaults filled in; an error names the field that is wrong."""
    schema = METHODS[method]
    unknown = sorted(set(given) - set(schema))
    if unknown:
        allowed = ", ".join(schema) or "none"
        raise JobInputError(f"{unknown[0]}: not a parameter of {method} (allowed: {allowed}).", unknown[0])
    return {name: _checked(name, param, given.get(name)) for name, param in schema.items()}


def _checked(name: str, param: Param, value: Any) -> float | int:
    if value is None or value == "":
        return param.default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise JobInputError(f"{name}: enter a number, not {str(value)[:40]!r}.", name) from None
    if not math.isfinite(number) or not param.low <= number <= param.high or (param.integer and number % 1):
        kind = "a whole number" if param.integer else "a number"
        raise JobInputError(f"{name}: enter {kind} from {param.low:g} to {param.high:g}, not {value}.", name)
    return int(number) if param.integer else number


def compression_run(*, compression_id: int) -> None:
    """On the worker: compress into job folder/compressed/<id>/ and store sizes and accuracies."""
    from training.backends import backends

    with claimed(Compression, compression_id) as claim:
        if claim is None:
            return
        compression, progress, result = claim
        job = compression.job
        backend = backends[job.backend]  # compression_start offered only the methods it declares
        target = job.folder / "compressed" / str(compression.pk)
        with cache.working(job.folder):
            facts = backend.compress(model_files(job.folder / compression.snapshot.path), compression.method,
                                     compression.params, target, training_plan(job), _ProgressOnly(progress))
            retrying(lambda: store().publish_folder(target), stop=progress.lease.stop.is_set)
        progress.lease.update(path=str((target / facts["file"]).relative_to(job.folder)))
        result.update(facts, epoch=compression.snapshot.epoch)


class _ProgressOnly(SilentReporter):
    """The reporter a compression needs: progress goes to the row; nothing else is recorded."""

    def __init__(self, progress: Any) -> None:
        self.write = progress

    def progress(self, *, epoch: float, step: int, total_steps: int) -> None:
        self.write(step / max(total_steps, 1))


def compression_classify(*, compression: Compression, image: UploadedFile) -> dict[str, Any]:
    """Top-5 for one image with the compressed model, run on the worker."""
    from datasets.ingest.store import png_data_url

    if compression.status != "done":
        raise JobStateError(f"The compression is {compression.status}; classify once it is done.")
    pixels = preprocess(job=compression.job, image=image)
    outputs = client.infer("results.classify_compressed", compression.job.backend,
                           data_name(compression.job.folder / compression.path), pixels[np.newaxis])
    dataset = compression.job.dataset
    # The job's vision task answers, as for its uncompressed snapshot (jobs.inference.job_infer).
    predictions = vision_task(dataset.task).infer_answer(outputs[0], dataset.classes)["predictions"]
    return {"predictions": predictions, "preprocessed": png_data_url(pixels)}


def compression_package(compression: Compression) -> tuple[Path, str] | None:
    """The compressed model's download (an export archive with predict.py) and a file name for it;
    None while the compression is not done or made no package."""
    package = (compression.result or {}).get("package")
    if compression.status != "done" or not package or not compression.path:
        return None
    path = compression.job.folder / Path(compression.path).parent / package
    stem = slugify(compression.job.name) or f"job-{compression.job_id}"
    name = f"{stem}-epoch_{compression.snapshot.epoch:g}-{compression.method.replace('_', '-')}.zip"
    return (path, name) if path.is_file() else None


def classify_compressed_on_worker(*, backend: str, weights: str, images: str) -> list[list[float]]:
    """On a serving worker, warm and batched as a snapshot's classify is (serving.work)."""
    from serving.work import infer

    return infer(backend, Path(weights), wire.unpack(images)).tolist()
