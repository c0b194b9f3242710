"""Classify many: a zip or tar of images, or a list of server paths, optionally with true labels.

The web side checks what it can before anything is queued (the job's state, the archive's
kind, paths under the allowed roots, labels among the dataset's classes). The worker extracts,
decodes each image as the dataset was decoded, classifies in batches and stores one row per
image in the batch folder, with only a summary (and the first rows) in the database.
"""
from __future__ import annotations

import contextlib
import csv
import json
import shutil
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from datasets.ingest import IngestError
from datasets.ingest.archive import archive_kind, is_image_name, safe_parts
from jobs.errors import JobInputError, JobStateError
from jobs.models import Snapshot, TrainingJob
from results.models import BatchClassification
from results.work import WorkFailed, claimed, done_snapshot, enqueue
from workbench import cache
from workbench.storage import StoreUnavailable, model_files, retrying, store

BATCH = 128
TOP_K = 5
PREVIEW_ROWS = 200
THUMB_SIDE = 96
UPLOAD, IMAGES, LISTING, THUMBS = "upload", "images", "listing.json", "thumbs"
ROWS, CSV = "rows.json", "results.csv"
CSV_HEADER = ["file", "true_label"] + [f"top{k}_{what}" for k in range(1, TOP_K + 1)
                                       for what in ("label", "probability")] + ["error"]


@dataclass(frozen=True)
class Entry:
    """One image to classify: its name as the user wrote it, where it is, and its true label."""

    name: str
    path: str
    label: str | None = None


# --- start (web) ------------------------------------------------------------------------------

def batch_start(*, job: TrainingJob, name: str = "", archive: UploadedFile | None = None,
                listing: str | None = None, epoch: float | None = None) -> BatchClassification:
    """Check the input and queue the classification; refusals are JobStateError or JobInputError."""
    if job.dataset.task == "detection":  # its answers are boxes, not the class probabilities this tallies
        raise JobStateError("Classifying many images is not available for detection jobs; use infer or evaluate.")
    snapshot = done_snapshot(job=job, epoch=epoch, action="classify images with")
    if archive is not None and listing:
        raise JobInputError("Give either an archive of images or a list of paths, not both.", "listing")
    if archive is not None:
        return _start_archive(job, snapshot, name, archive)
    if listing is None:
        raise JobInputError("Choose a zip or tar of images, or give a list of image paths on the server.", "archive")
    entries = parse_listing(listing, job.dataset.classes)
    return _insert(job, snapshot, name or f"List of {len(entries)} image{'s' if len(entries) != 1 else ''}", "list",
                   has_labels=entries[0].label is not None,
                   place=lambda folder: (folder / LISTING).write_text(json.dumps([asdict(e) for e in entries])))


def listing_text(value: object) -> str | None:
    """The list as text, whether it came as a text field or as an uploaded file."""
    if value is None or isinstance(value, str):
        return value
    try:
        return b"".join(value.chunks()).decode("utf-8-sig")  # type: ignore[attr-defined]
    except UnicodeDecodeError:
        raise JobInputError("The list is not UTF-8 text; give one path per line.", "listing") from None


def _start_archive(job: TrainingJob, snapshot: Snapshot, name: str, archive: UploadedFile) -> BatchClassification:
    from datasets.services import DatasetInputError, stage_upload

    try:
        staged = stage_upload(archive)
    except DatasetInputError as exc:
        raise JobInputError(str(exc), "archive") from None
    try:
        has_labels = _zip_precheck(staged, job.dataset.classes)
        return _insert(job, snapshot, name or Path(archive.name or "archive").name, "archive",
                       has_labels=has_labels, place=lambda folder: shutil.move(staged, folder / UPLOAD))
    finally:
        staged.unlink(missing_ok=True)


def _insert(job: TrainingJob, snapshot: Snapshot, name: str, source: str, *, has_labels: bool,
            place: Any) -> BatchClassification:
    with transaction.atomic():
        batch = BatchClassification.objects.create(job=job, snapshot=snapshot, name=name[:300], source=source,
                                                   has_labels=has_labels)
        batch.folder.mkdir(parents=True, exist_ok=True)
        place(batch.folder)
        store().publish_folder(batch.folder)  # the worker may run on another host
        enqueue("results.classify_many", batch.pk)
    return batch


def _zip_precheck(path: Path, classes: list[str]) -> bool:
    """Whether a zip's folders give labels; a zip without images is refused here. A tar can only be
    listed by reading all of it, so the worker checks tars."""
    if archive_kind(path) != "zip":
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = [safe_parts(info.filename) for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, IngestError) as exc:
        raise JobInputError(f"The archive could not be used: {exc}", "archive") from None
    images = image_members(names)
    if not images:
        raise JobInputError(no_images_message(len(names)), "archive")
    return folder_labels(images, classes) is not None


def image_members(names: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    return [p for p in names if p and not any(s.startswith(".") or s == "__MACOSX" for s in p)
            and is_image_name(p[-1])]


def no_images_message(others: int) -> str:
    return (f"The archive holds no images (JPEG, PNG, BMP, GIF or WebP); "
            f"{others} other file{'s' if others != 1 else ''} {'were' if others != 1 else 'was'} ignored.")


def folder_labels(images: list[tuple[str, ...]], classes: list[str]) -> list[str] | None:
    """Labels from `<class>/<file>` (under any single wrapping folder) when every image has one."""
    known, lead = set(classes), 0
    while (all(len(p) > lead + 1 for p in images) and len({p[lead] for p in images}) == 1
           and images[0][lead] not in known):
        lead += 1
    if images and all(len(p) > lead + 1 and p[lead] in known for p in images):
        return [p[lead] for p in images]
    return None


# --- the list of server paths -------------------------------------------------------------------

def parse_listing(text: str, classes: list[str]) -> list[Entry]:
    """`path` or `path<tab, comma or space>label` per line; blank lines and `# comments` skipped."""
    _server_path("")  # refuses at once, with the reason, when server paths are turned off
    entries: list[tuple[int, Entry]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        written, label = _split_line(line)
        if label is not None and label not in classes:
            raise JobInputError(f"Line {number}: unknown label '{label}'; the dataset's classes are "
                                f"{_names(classes)}.", "listing")
        entries.append((number, Entry(written, str(_listed_file(written, number)), label)))
        if len(entries) > settings.WORKBENCH["MAX_ARCHIVE_MEMBERS"]:
            raise JobInputError(f"The list names more than {settings.WORKBENCH['MAX_ARCHIVE_MEMBERS']:,} images, "
                                "over the limit.", "listing")
    if not entries:
        raise JobInputError("The list names no images; give one path per line.", "listing")
    _labels_all_or_none(entries)
    return [entry for _, entry in entries]


def _server_path(written: str) -> Path:
    from datasets.services import DatasetInputError, allowed_server_path

    try:
        return allowed_server_path(written)
    except DatasetInputError as exc:
        raise JobInputError(str(exc), "listing") from None


def _split_line(line: str) -> tuple[str, str | None]:
    for separator in ("\t", ","):
        if separator in line:
            path, label = line.rsplit(separator, 1)
            return path.strip(), label.strip() or None
    parts = line.rsplit(None, 1)
    # A path with a space in it and no label is still a path.
    if len(parts) == 2 and not _is_allowed_file(line):
        return parts[0], parts[1]
    return line, None


def _is_allowed_file(written: str) -> bool:
    try:
        return _server_path(written).is_file()
    except JobInputError:
        return False


def _listed_file(written: str, number: int) -> Path:
    try:
        real = _server_path(written)
    except JobInputError as exc:
        raise JobInputError(f"Line {number}: {exc}", "listing") from None
    if not real.is_file():
        raise JobInputError(f"Line {number}: '{written}' is not a file on the server.", "listing")
    return real


def _labels_all_or_none(entries: list[tuple[int, Entry]]) -> None:
    with_label = [n for n, e in entries if e.label is not None]
    without = [n for n, e in entries if e.label is None]
    if with_label and without:
        raise JobInputError(f"Line {with_label[0]} has a label but line {without[0]} has none; "
                            "give a label on every line or on none.", "listing")


def _names(classes: list[str], limit: int = 20) -> str:
    shown = ", ".join(classes[:limit])
    return shown + (f" … ({len(classes)} in all)" if len(classes) > limit else "")


# --- run (worker) --------------------------------------------------------------------------------

@dataclass
class _Tally:
    """Top-k hits and (true, predicted) pairs over the labelled images that could be decoded."""

    top1: float = 0.0
    top5: float = 0.0
    true: list[int] = field(default_factory=list)
    predicted: list[int] = field(default_factory=list)


def batch_run(*, batch_id: int) -> None:
    """On the worker: gather the images, classify them in batches, store rows and a summary."""
    with claimed(BatchClassification, batch_id) as claim:
        if claim is None:
            return
        batch, progress, result = claim
        try:
            with cache.working(batch.folder):
                if store().remote:
                    store().fetch(batch.folder / (UPLOAD if batch.source == "archive" else LISTING))
                if batch.source == "archive":
                    entries, ignored = _extracted_entries(batch, lambda f: progress(0.1 * f))
                    start = 0.1
                else:
                    entries, ignored, start = _listed_entries(batch), 0, 0.0
                rows, tally = _classify(batch, entries, lambda f: progress(start + (1 - start) * f))
                _write_rows(batch.folder, rows)
                _drop_sources(batch.folder)
                retrying(lambda: store().publish_folder(batch.folder), stop=progress.lease.stop.is_set)
            result.update(summary(batch, rows, tally, ignored))
        finally:
            _drop_sources(batch.folder)


def _drop_sources(folder: Path) -> None:
    shutil.rmtree(folder / IMAGES, ignore_errors=True)
    (folder / UPLOAD).unlink(missing_ok=True)


def _extracted_entries(batch: BatchClassification, progress: Any) -> tuple[list[Entry], int]:
    from datasets.ingest.archive import ExtractLimits, extract_archive

    limits = ExtractLimits(settings.WORKBENCH["MAX_ARCHIVE_MEMBERS"], settings.WORKBENCH["MAX_EXTRACTED_BYTES"],
                           settings.WORKBENCH["MAX_COMPRESSION_RATIO"])
    dest = batch.folder / IMAGES
    try:
        report = extract_archive(batch.folder / UPLOAD, dest, limits, progress)
    except IngestError as exc:
        raise WorkFailed(str(exc)) from None
    paths = sorted(p for p in dest.rglob("*") if p.is_file())
    if not paths:
        raise WorkFailed(no_images_message(report.ignored))
    parts = [p.relative_to(dest).parts for p in paths]
    labels = folder_labels(parts, batch.job.dataset.classes)
    if labels is not None and not batch.has_labels:
        BatchClassification.objects.filter(pk=batch.pk).update(has_labels=True)
        batch.has_labels = True
    return [Entry("/".join(part), str(path), labels[i] if labels else None)
            for i, (part, path) in enumerate(zip(parts, paths))], report.ignored


def _listed_entries(batch: BatchClassification) -> list[Entry]:
    return [Entry(**e) for e in json.loads((batch.folder / LISTING).read_text())]


def _classify(batch: BatchClassification, entries: list[Entry], progress: Any) -> tuple[list[dict[str, Any]], _Tally]:
    from datasets.ingest.pipeline import ingest_workers
    from training.backends import backends

    job, dataset = batch.job, batch.job.dataset
    backend, weights = backends[job.backend], model_files(job.folder / batch.snapshot.path)
    (batch.folder / THUMBS).mkdir(exist_ok=True)
    read = _Reader(dataset, batch.folder, check_roots=batch.source == "list")
    rows: list[dict[str, Any]] = []
    tally = _Tally()
    with ThreadPoolExecutor(max_workers=ingest_workers(settings.WORKBENCH["INGEST_WORKERS"])) as pool:
        for start in range(0, len(entries), BATCH):
            chunk = entries[start : start + BATCH]
            decoded = list(pool.map(read, range(start, start + len(chunk)), chunk))
            ok = [i for i, (pixels, _) in enumerate(decoded) if pixels is not None]
            probabilities = backend.infer(weights, np.stack([decoded[i][0] for i in ok])) if ok else None
            rows.extend(_rows(chunk, decoded, ok, probabilities, dataset.classes, tally))
            progress(min(start + BATCH, len(entries)) / len(entries))
    return rows, tally


class _Reader:
    """Decodes one image as the dataset's images were decoded and writes its thumbnail; called from
    several threads, so it holds everything it needs and never touches the database."""

    def __init__(self, dataset: Any, folder: Path, *, check_roots: bool) -> None:
        from datasets.ingest.images import ImageSpec

        self.spec = ImageSpec(dataset.image_width, dataset.image_height, dataset.channels, dataset.resize_mode,
                              settings.WORKBENCH["MAX_IMAGE_PIXELS"])
        self.seed, self.folder, self.check_roots = dataset.seed, folder, check_roots

    def __call__(self, index: int, entry: Entry) -> tuple[np.ndarray | None, str]:
        from datasets.ingest.images import ImageRejected, decode
        from datasets.ingest.store import to_pil

        if self.check_roots and not _is_allowed_file(entry.path):
            return None, "The file is no longer under an allowed server folder."
        try:
            pixels = decode(entry.path, self.spec, np.random.default_rng(self.seed))
        except ImageRejected as exc:
            return None, f"Not a usable image: {str(exc).replace(entry.path, entry.name)}"
        except OSError as exc:
            return None, f"The file could not be read ({exc.strerror or type(exc).__name__})."
        thumb = to_pil(pixels)
        thumb.thumbnail((THUMB_SIDE, THUMB_SIDE))
        thumb.save(thumb_path(self.folder, index), format="PNG")
        return pixels, ""


def thumb_path(folder: Path, index: int) -> Path:
    return folder / THUMBS / f"{index}.png"


def _rows(chunk: list[Entry], decoded: list[tuple[np.ndarray | None, str]], ok: list[int],
          probabilities: np.ndarray | None, classes: list[str], tally: _Tally) -> list[dict[str, Any]]:
    from training.vision_tasks.classification.metrics import topk_accuracy

    rows = [{"file": e.name, "true": e.label, "top": [], "error": error} for e, (_, error) in zip(chunk, decoded)]
    if probabilities is None:
        return rows
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :TOP_K]
    for position, i in enumerate(ok):
        rows[i]["top"] = [[classes[c], round(float(probabilities[position, c]), 6)] for c in order[position]]
    labelled = [(position, classes.index(chunk[i].label)) for position, i in enumerate(ok) if chunk[i].label]
    if labelled:
        positions, labels = (np.array(v) for v in zip(*labelled))
        tally.top1 += topk_accuracy(probabilities[positions], labels, 1) * len(labels)
        tally.top5 += topk_accuracy(probabilities[positions], labels, TOP_K) * len(labels)
        tally.true.extend(labels.tolist())
        tally.predicted.extend(order[positions, 0].tolist())
    return rows


def _write_rows(folder: Path, rows: list[dict[str, Any]]) -> None:
    (folder / ROWS).write_text(json.dumps(rows))
    with (folder / CSV).open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(CSV_HEADER)
        for row in rows:
            top = [value for pair in row["top"] for value in pair]
            top += [""] * (2 * TOP_K - len(top))
            writer.writerow([row["file"], row["true"] or "", *top, row["error"]])


def summary(batch: BatchClassification, rows: list[dict[str, Any]], tally: _Tally, ignored: int) -> dict[str, Any]:
    """What the database keeps: counts, accuracies and the first rows; the rest stays in files."""
    failed = sum(1 for r in rows if r["error"])
    result: dict[str, Any] = {"epoch": batch.snapshot.epoch, "count": len(rows), "classified": len(rows) - failed,
                              "failed": failed, "ignored": ignored, "has_labels": batch.has_labels,
                              "rows": rows[:PREVIEW_ROWS]}
    if batch.has_labels:
        result.update(_accuracy(tally, batch.job.dataset.classes))
    return result


def _accuracy(tally: _Tally, classes: list[str]) -> dict[str, Any]:
    from training.vision_tasks.classification.metrics import confusion_matrix, per_class

    scored = len(tally.true)
    matrix = confusion_matrix(np.array(tally.true, dtype=np.int64), np.array(tally.predicted, dtype=np.int64),
                              len(classes))
    rows = [{**row, "accuracy": row["recall"]} for row in per_class(matrix, classes)]
    return {"scored": scored, "top1": tally.top1 / scored if scored else 0.0,
            "top5": tally.top5 / scored if scored else 0.0, "per_class": rows,
            "confusion": matrix.tolist(), "classes": classes}


def batch_rows(batch: BatchClassification) -> list[dict[str, Any]]:
    """Every row of a finished batch (the stored preview if the file is gone)."""
    path = batch.folder / ROWS
    if not path.exists() and batch.status == "done" and store().remote:
        with contextlib.suppress(FileNotFoundError, StoreUnavailable):
            store().fetch(path)
    return json.loads(path.read_text()) if path.exists() else list(batch.result.get("rows", []))
