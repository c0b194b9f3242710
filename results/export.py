"""Download and export a snapshot: an archive (safetensors + spec + README + predict.py), TorchScript, ONNX.

One export per (snapshot, format), stored under the job's folder and reused; a failed one is retried.
"""
from __future__ import annotations

from pathlib import Path

from django.utils.text import slugify

from jobs.models import Snapshot, TrainingJob
from jobs.selectors import job_capabilities, job_snapshot
from results.models import Export
from results.work import claimed, done_snapshot, offered_choice, stored_or_new
from workbench import cache
from workbench.storage import model_files, retrying, store

# The formats the product knows (file extension, name); a job is offered those its backend declares.
FORMATS = {"archive": "zip", "torchscript": "pt", "onnx": "onnx"}
FORMAT_NAMES = {"archive": "Archive", "torchscript": "TorchScript", "onnx": "ONNX"}


def offered_formats(*, job: TrainingJob) -> list[tuple[str, str]]:
    """(format, name) for each export format the job's backend can write."""
    return [(fmt, FORMAT_NAMES[fmt]) for fmt in job_capabilities(job=job).export_formats if fmt in FORMATS]


def export_start(*, job: TrainingJob, fmt: str, epoch: float | None = None) -> tuple[Export, bool]:
    """The stored export of this snapshot in this format, or a new queued one. (export, created)"""
    snapshot = done_snapshot(job=job, epoch=epoch, action="export")
    offered_choice(value=fmt, offered=[name for name, _ in offered_formats(job=job)], known=FORMATS,
                   unknown="Unknown export format", cannot=f"The {job.backend} backend cannot export", field="format")
    return stored_or_new(Export, "results.export", job=job, snapshot=snapshot, format=fmt)


def export_run(*, export_id: int) -> None:
    """On the worker: write the file with the job's backend and store its size and checks."""
    from training.backends import backends

    with claimed(Export, export_id) as claim:
        if claim is None:
            return
        export, progress, result = claim
        job = export.job
        backend = backends[job.backend]  # export_start offered only the formats it declares
        relative = export_path(export.snapshot, export.format)
        progress(0.1)
        with cache.working(job.folder):
            facts = backend.export(model_files(job.folder / export.snapshot.path), export.format, job.folder / relative)
            size = (job.folder / relative).stat().st_size
            retrying(lambda: store().publish(job.folder / relative), stop=progress.lease.stop.is_set)
        progress.lease.update(path=str(relative), size_bytes=size)
        result.update(facts, epoch=export.snapshot.epoch, size_bytes=size)


def export_path(snapshot: Snapshot, fmt: str) -> Path:
    """Where an export lives, relative to its job's folder."""
    return Path("exports") / f"epoch_{snapshot.epoch:g}.{FORMATS[fmt]}"


def export_file(export: Export) -> Path | None:
    """The finished export's file, or None while it is not done (or its file is gone)."""
    if export.status != "done" or not export.path:
        return None
    return export.job.folder / export.path


def download_name(export: Export) -> str:
    """A file name that says what it is: job-name-epoch_3-onnx.onnx."""
    stem = slugify(export.job.name) or f"job-{export.job_id}"
    return f"{stem}-epoch_{export.snapshot.epoch:g}-{export.format}.{FORMATS[export.format]}"


def snapshot_file(*, job: TrainingJob, epoch: float) -> tuple[Path, str]:
    """The raw weights of one snapshot (safetensors) and a download name for them."""
    snapshot = job_snapshot(job=job, epoch=epoch)
    stem = slugify(job.name) or f"job-{job.pk}"
    return job.folder / snapshot.path, f"{stem}-epoch_{snapshot.epoch:g}.safetensors"
