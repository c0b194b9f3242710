"""Writes for datasets: create, ingest, delete. Views and tasks call these and nothing else."""
from __future__ import annotations

import contextlib
import logging
import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from datasets.ingest import IngestError
from datasets.ingest.archive import ExtractLimits, ZipSource, archive_kind, extract_archive
from datasets.ingest.detection import LABEL_SUFFIXES, run_detection_ingest
from datasets.ingest.pipeline import IngestOptions, IngestResult, ingest_workers, run_ingest
from datasets.ingest.segmentation import SIDE_FILES, run_segmentation_ingest
from datasets.models import Dataset
from workbench import cache
from workbench.leases import Lease, lease_claim
from workbench.progress import RowProgress
from workbench.queue import enqueue
from workbench.runner import LeasedRun, run_leased
from workbench.storage import StoreUnavailable, retrying, store

log = logging.getLogger(__name__)

EXTRACTED = "extracted"


class DatasetInputError(Exception):
    """Bad input from the user, with the form field it belongs to."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DatasetBusy(Exception):
    """A dataset in use (a job trains on it): the API answers 409 (workbench.api.refusal_response)."""

    http_status = 409


# --- create ---------------------------------------------------------------------------------

def dataset_create(*, owner: AbstractBaseUser, name: str, options: IngestOptions,
                   archive: UploadedFile | None = None, server_path: str = "") -> Dataset:
    """Store the upload (or check the folder), add a queued row, and queue the ingest."""
    if archive is not None:
        staged = stage_upload(archive)
        source, source_name = Dataset.Source.ARCHIVE, Path(archive.name or "upload").name
    else:
        staged = None
        source, source_name = Dataset.Source.SERVER_PATH, str(resolve_server_path(server_path))
    def place(folder: Path) -> None:
        # Into the store before the ingest is queued: a worker on another host fetches it from there.
        if staged is not None:
            upload = folder / f"upload{_suffix(source_name)}"
            staged.replace(upload)
            if store().remote:
                store().publish(upload)
                upload.unlink()  # this host is the web's; the ingest fetches it where it runs

    try:
        dataset = _dataset_insert(owner, name, options, source, source_name, place)
    finally:
        if staged is not None:
            staged.unlink(missing_ok=True)
    return dataset


EXAMPLES = ("digits", "segmentation", "detection")


def dataset_create_example(*, owner: AbstractBaseUser, example: str = "digits") -> Dataset:
    """A generated example through the same ingest as uploads: "digits", the handwritten digits bundled
    with scikit-learn, "segmentation", shapes on noisy backgrounds with exact masks, or "detection",
    shapes on such backgrounds with exact boxes, written as a YOLO zip (datasets.example)."""
    if example == "detection":
        from datasets.example import DETECTION_HEIGHT, DETECTION_SOURCE, DETECTION_WIDTH

        options = IngestOptions(width=DETECTION_WIDTH, height=DETECTION_HEIGHT, channels=3, resize_mode="squash",
                                val_percent=20, test_percent=10, seed=42, task="detection")
        return _dataset_insert(owner, "Shapes detection (example)", options, Dataset.Source.EXAMPLE,
                               DETECTION_SOURCE)
    if example == "segmentation":
        from datasets.example import SHAPES_SOURCE

        options = IngestOptions(width=64, height=64, channels=3, resize_mode="squash", val_percent=20,
                                test_percent=10, seed=42, task="segmentation")
        return _dataset_insert(owner, "Shapes segmentation (example)", options, Dataset.Source.EXAMPLE,
                               SHAPES_SOURCE)
    options = IngestOptions(width=28, height=28, channels=1, resize_mode="squash",
                            val_percent=20, test_percent=10, seed=42)
    return _dataset_insert(owner, "Handwritten digits (example)", options,
                           Dataset.Source.EXAMPLE, "scikit-learn load_digits (1,797 images, 8x8)")


def _dataset_insert(owner: AbstractBaseUser, name: str, options: IngestOptions, source: str,
                    source_name: str, place: Callable[[Path], None] = lambda folder: None) -> Dataset:
    with transaction.atomic():
        dataset = Dataset.objects.create(owner=owner, name=name, source=source, source_name=source_name,
                                         **_option_fields(options))
        # A rolled-back insert can hand the same id out again: never inherit its leftovers.
        shutil.rmtree(dataset.folder, ignore_errors=True)
        dataset.folder.mkdir(parents=True)
    try:
        place(dataset.folder)  # outside the transaction: an upload into the store may take minutes
    except BaseException:
        Dataset.objects.filter(pk=dataset.pk).delete()
        shutil.rmtree(dataset.folder, ignore_errors=True)
        raise
    transaction.on_commit(lambda: enqueue("datasets.ingest", dataset.pk))
    return dataset


def _option_fields(options: IngestOptions) -> dict[str, object]:
    fields = asdict(options)
    fields["image_width"], fields["image_height"] = fields.pop("width"), fields.pop("height")
    return fields


def _suffix(name: str) -> str:
    lowered = name.lower()
    for suffix in (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip"):
        if lowered.endswith(suffix):
            return suffix
    return ".archive"


def stage_upload(archive: UploadedFile) -> Path:
    """Move (or stream) the upload to the data folder and check that it is an archive."""
    staged = Path(settings.FILE_UPLOAD_TEMP_DIR) / f"staged-{uuid.uuid4().hex}"
    temporary_path = getattr(archive, "temporary_file_path", None)
    if temporary_path is not None:
        shutil.move(temporary_path(), staged)
    else:
        with staged.open("wb") as out:
            for chunk in archive.chunks():
                out.write(chunk)
    if archive_kind(staged) is None:
        staged.unlink(missing_ok=True)
        raise DatasetInputError("The file is not a zip or tar archive (zip, tar, tar.gz, tgz, tar.bz2, tar.xz).",
                                "archive")
    return staged


def allowed_server_path(raw: str) -> Path:
    """The real path (links resolved) for a server path, only if it lies under an allowed root.

    Relative paths are taken from the first root. Datasets and classify-many lists both go
    through here, so the rule is the same wherever a user names a file on the server.
    """
    roots = [Path(r) for r in settings.WORKBENCH["SERVER_ROOTS"]]
    if not roots:
        raise DatasetInputError("Server folders are turned off; set WORKBENCH_SERVER_ROOTS to allow them.",
                                "server_path")
    candidate = Path(raw).expanduser()
    if not candidate.is_absolute():
        candidate = roots[0] / candidate
    real = candidate.resolve()
    if not any(real.is_relative_to(root.resolve()) for root in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise DatasetInputError(f"'{raw}' is outside the allowed server folders ({allowed}).", "server_path")
    return real


def resolve_server_path(raw: str) -> Path:
    """The real folder for a server path, only if it lies under an allowed root."""
    real = allowed_server_path(raw)
    if not real.is_dir():
        raise DatasetInputError(f"'{raw}' is not a folder on the server.", "server_path")
    return real


# --- ingest (runs on the worker) ------------------------------------------------------------

def dataset_ingest(*, dataset_id: int) -> None:
    """Claim a queued dataset and ingest it; a second delivery of the same task does nothing.

    A killed ingest is taken back and run again from the start (workbench.recovery): the upload
    stays until an attempt ends, and each attempt rebuilds the arrays from it.
    """
    run_leased(_IngestRun(dataset_id))


class _IngestRun(LeasedRun):
    """An ingest under workbench.runner: it ends ready with the arrays' facts, or in error, and its
    sources go. A run that lost its lease touches nothing: a newer attempt owns the folder now."""

    worded = (IngestError, StoreUnavailable)
    logger = log

    def __init__(self, dataset_id: int) -> None:
        self.pk = dataset_id

    def claim(self) -> Lease | None:
        lease = lease_claim(Dataset, self.pk, progress=0.0, updated_at=timezone.now())
        if lease is not None:
            self.dataset = Dataset.objects.get(pk=self.pk)
        return lease

    def body(self, lease: Lease) -> None:
        folder = self.dataset.folder
        with cache.working(folder):
            self.result = _ingest(self.dataset, RowProgress(lease, updated_at=timezone.now))
            # Ready only once every array, thumbnail and the mean are in the store.
            _clean_sources(folder)
            retrying(lambda: store().publish_folder(folder), stop=lease.stop.is_set)

    def done(self, lease: Lease) -> None:
        _finish_ready(lease, self.result)
        _drop_upload(self.dataset)

    def failed(self, lease: Lease, message: str) -> None:
        _finish_with_error(lease, self.dataset, message)
        _drop_upload(self.dataset)

    def unexpected(self, exc: Exception) -> str:
        return f"The ingest failed unexpectedly ({type(exc).__name__}: {exc})."

    def describe(self) -> str:
        return f"ingest of dataset {self.pk}"


def _ingest(dataset: Dataset, progress: RowProgress) -> IngestResult:
    source = _materialise_source(dataset, progress.span(0.0, 0.15))
    options = IngestOptions(
        width=dataset.image_width, height=dataset.image_height, channels=dataset.channels,
        resize_mode=dataset.resize_mode, val_percent=dataset.val_percent, test_percent=dataset.test_percent,
        seed=dataset.seed, min_per_class=dataset.min_per_class, max_per_class=dataset.max_per_class,
        task=dataset.task, ignore_index=dataset.ignore_index, box_format=dataset.box_format)
    ingest = _INGESTS.get(dataset.task, run_ingest)
    try:
        return ingest(source, dataset.folder, options, max_pixels=settings.WORKBENCH["MAX_IMAGE_PIXELS"],
                      workers=ingest_workers(settings.WORKBENCH["INGEST_WORKERS"]),
                      progress=progress.span(0.15, 1.0))
    finally:
        if isinstance(source, ZipSource):
            source.close()


_INGESTS = {"segmentation": run_segmentation_ingest, "detection": run_detection_ingest}


def _materialise_source(dataset: Dataset, progress) -> Path | ZipSource:  # type: ignore[no-untyped-def]
    """The dataset's files (class folders, or images and masks): a zip read in place, or extracted,
    generated, or the server's own."""
    if dataset.source == Dataset.Source.SERVER_PATH:
        # Checked again here: the allowed roots may have changed since the dataset was queued.
        return resolve_server_path(dataset.source_name)
    extracted = dataset.folder / EXTRACTED
    shutil.rmtree(extracted, ignore_errors=True)  # what an earlier, killed attempt extracted
    if dataset.source == Dataset.Source.EXAMPLE and dataset.task == "detection":
        from datasets.example import write_detection_zip

        # Written as the archive a user would upload, so the example takes the upload's whole path.
        write_detection_zip(dataset.folder / "upload.zip")
    elif dataset.source == Dataset.Source.EXAMPLE:
        from datasets.example import write_digits, write_shapes

        (write_shapes if dataset.task == "segmentation" else write_digits)(extracted)
        return extracted
    if dataset.source == Dataset.Source.ARCHIVE and store().remote:
        upload = dataset.folder / f"upload{_suffix(dataset.source_name)}"
        with contextlib.suppress(FileNotFoundError):
            retrying(lambda: store().fetch(upload))
    uploads = list(dataset.folder.glob("upload*"))
    if not uploads:
        raise IngestError("The uploaded archive is missing from the data folder.")
    limits = ExtractLimits(settings.WORKBENCH["MAX_ARCHIVE_MEMBERS"], settings.WORKBENCH["MAX_EXTRACTED_BYTES"],
                           settings.WORKBENCH["MAX_COMPRESSION_RATIO"])
    if archive_kind(uploads[0]) == "zip":
        # A zip is read where it lies: its members are checked up front and decoded straight
        # from it, which saves writing every image to disk and reading it back.
        source = ZipSource(uploads[0], limits)
        images = source.images
    else:
        # A segmentation archive's classes.txt and colormap.txt travel beside its images, a detection
        # archive's label files (and classes.txt, data.yaml) too.
        keep = SIDE_FILES if dataset.task == "segmentation" else frozenset()
        suffixes = LABEL_SUFFIXES if dataset.task == "detection" else frozenset()
        source, images = extracted, extract_archive(uploads[0], extracted, limits, progress, keep, suffixes).images
    if images == 0:
        raise IngestError("The archive holds no image files (JPEG, PNG, BMP, GIF or WebP).")
    return source


def _finish_ready(lease: Lease, result: IngestResult) -> None:
    lease.end(
        status=Dataset.Status.READY, progress=1.0, error="", classes=result.classes,
        split_counts=result.split_counts, class_counts=result.class_counts, skipped=result.skipped,
        warnings=result.warnings, class_pixels=result.class_pixels, colormap=result.colormap,
        updated_at=timezone.now(), **_detection_fields(result))


def _detection_fields(result: IngestResult) -> dict[str, object]:
    if result.box_counts is None:
        return {}
    return {"box_format": result.box_format, "box_counts": result.box_counts, "boxes_dropped": result.boxes_dropped,
            "images_without_boxes": result.images_without_boxes}


def _finish_with_error(lease: Lease, dataset: Dataset, message: str) -> None:
    for path in [*dataset.folder.glob("*.npy"), *dataset.folder.glob("*.json")]:
        path.unlink(missing_ok=True)
    lease.end(status=Dataset.Status.ERROR, error=message, updated_at=timezone.now())


def _clean_sources(folder: Path) -> None:
    shutil.rmtree(folder / EXTRACTED, ignore_errors=True)
    for upload in folder.glob("upload*"):
        upload.unlink(missing_ok=True)


def _drop_upload(dataset: Dataset) -> None:
    """The ingest has ended: its sources go, here and in the store (a taken-back ingest still needed them)."""
    _clean_sources(dataset.folder)
    if dataset.source == Dataset.Source.ARCHIVE and store().remote:
        try:
            store().delete(dataset.folder / f"upload{_suffix(dataset.source_name)}")
        except StoreUnavailable:
            log.warning("could not delete the upload of dataset %s from the store", dataset.pk, exc_info=True)


# --- delete ---------------------------------------------------------------------------------

def dataset_delete(*, dataset: Dataset) -> None:
    """Remove the row and the dataset's folder; refuse while an ingest is still working on it."""
    beat = dataset.heartbeat_at or dataset.updated_at
    fresh = timezone.now() - beat < timedelta(seconds=settings.HEARTBEAT_TIMEOUT)
    if dataset.status == Dataset.Status.RUNNING and fresh:
        raise DatasetBusy("The dataset is still being ingested; delete it when the ingest has finished.")
    in_use = _jobs_using(dataset)
    if in_use:
        raise DatasetBusy(f"The dataset is used by {in_use} training job(s); delete those first.")
    folder = dataset.folder
    with transaction.atomic():
        dataset.delete()
        transaction.on_commit(lambda: store().delete_folder(folder))


def _jobs_using(dataset: Dataset) -> int:
    related = getattr(dataset, "training_jobs", None)
    return related.count() if related is not None else 0
