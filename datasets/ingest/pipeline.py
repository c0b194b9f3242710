"""The ingest pipeline: scan class folders, decode in parallel, split, write arrays."""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datasets.ingest import IngestError
from datasets.ingest.archive import IMAGE_EXTENSIONS
from datasets.ingest.images import ImageRejected, ImageSpec, decode
from datasets.ingest.store import STAGING, write_outputs

SPLITS = ("train", "val", "test")
_CHUNK = 64
Progress = Callable[[float], None]


@dataclass(frozen=True)
class IngestOptions:
    width: int
    height: int
    channels: int
    resize_mode: str
    val_percent: int
    test_percent: int
    seed: int
    min_per_class: int = 1
    max_per_class: int | None = None


@dataclass
class IngestResult:
    classes: list[str]
    split_counts: dict[str, int]
    class_counts: dict[str, dict[str, int]]
    skipped: dict[str, object]
    warnings: list[str] = field(default_factory=list)


# --- scanning -------------------------------------------------------------------------------

def find_root(folder: Path) -> Path:
    """Descend through single wrapping folders (`mydata/cats`, `mydata/dogs` → `mydata`)."""
    while True:
        entries = [e for e in folder.iterdir() if not e.name.startswith(".") and e.name != "__MACOSX"]
        dirs = [e for e in entries if e.is_dir() and not e.is_symlink()]
        if len(dirs) == 1 and not any(e.is_file() for e in entries):
            folder = dirs[0]
        else:
            return folder


def _images_under(folder: Path, allowed_root: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            # A link that leads out of the allowed folder is skipped, never followed.
            if path.is_symlink() and not path.resolve().is_relative_to(allowed_root):
                continue
            found.append(path)
    return found


def scan_classes(folder: Path) -> dict[str, list[Path]]:
    """Top-level folders are the classes; nested folders are flattened into their class."""
    root = find_root(folder)
    allowed = folder.resolve()
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.is_symlink()
                     and not d.name.startswith(".") and d.name != "__MACOSX")
    if not classes:
        if root != folder and _images_under(root, allowed):
            # find_root took the only folder for a wrapper, but it holds the images: one class.
            raise IngestError(f"Only one class folder was found ('{root.name}'); at least two are needed.")
        raise IngestError("No class folders found: the data must hold one folder per class, each with images.")
    if len(classes) == 1:
        raise IngestError(f"Only one class folder was found ('{classes[0].name}'); at least two are needed.")
    found = {d.name: _images_under(d, allowed) for d in classes}
    if not any(found.values()):
        raise IngestError("The class folders hold no image files (JPEG, PNG, BMP, GIF or WebP).")
    empty = [name for name, paths in found.items() if not paths]
    if empty:
        raise IngestError(f"Class '{empty[0]}' has no image files; every class folder needs at least one image.")
    return found


# --- parallel decode ------------------------------------------------------------------------

def _decode_chunk(out: np.ndarray, start: int, paths: list[Path], spec: ImageSpec,
                  seed: int) -> list[tuple[int, str, str]]:
    """Decode into rows of `out`; return (index, kind, reason) for each image that failed."""
    failures = []
    for offset, path in enumerate(paths):
        index = start + offset
        rng = np.random.default_rng([seed, index])
        try:
            out[index] = decode(path, spec, rng)
        except ImageRejected as exc:
            failures.append((index, exc.kind, str(exc).replace(str(path), path.name)))
    return failures


def ingest_workers(configured: int) -> int:
    return configured if configured > 0 else (os.cpu_count() or 1)


def decode_all(paths: list[Path], spec: ImageSpec, staging: Path, *, seed: int, workers: int,
               progress: Progress) -> list[tuple[int, str, str]]:
    """Decode every image into a staging array on disk, `workers` images at a time.

    Threads, not processes: Pillow releases the GIL while it decodes and resizes, so threads
    scale about as well as processes here, without spawn start-up or copying pixels around.
    """
    out = np.lib.format.open_memmap(staging, mode="w+", dtype=np.uint8,
                                    shape=(len(paths), spec.channels, spec.height, spec.width))
    starts = range(0, len(paths), _CHUNK)
    failures: list[tuple[int, str, str]] = []
    with ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="ingest") as pool:
        jobs = [pool.submit(_decode_chunk, out, i, paths[i : i + _CHUNK], spec, seed) for i in starts]
        for done, job in enumerate(jobs, 1):
            failures += job.result()
            progress(done / len(jobs))
    out.flush()
    del out
    return failures


# --- split ----------------------------------------------------------------------------------

def stratified_split(labels: np.ndarray, n_classes: int, options: IngestOptions) -> dict[str, np.ndarray]:
    """Indices per split, shuffled per class by the seed, so the same seed gives the same split."""
    rng = np.random.default_rng(options.seed)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for label in range(n_classes):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_val = math.floor(len(idx) * options.val_percent / 100 + 0.5)
        n_test = math.floor(len(idx) * options.test_percent / 100 + 0.5)
        parts["val"].append(idx[:n_val])
        parts["test"].append(idx[n_val : n_val + n_test])
        parts["train"].append(idx[n_val + n_test :])
    return {s: rng.permutation(np.concatenate(p)) if p else np.empty(0, dtype=np.int64) for s, p in parts.items()}


# --- the whole pipeline ---------------------------------------------------------------------

def _select(found: dict[str, list[Path]], options: IngestOptions) -> tuple[list[str], list[Path], list[int], list[str]]:
    rng = np.random.default_rng(options.seed)
    classes, paths, labels, warnings = [], [], [], []
    for name, files in found.items():
        if len(files) < options.min_per_class:
            warnings.append(f"Class '{name}' was left out: {len(files)} images, fewer than the minimum {options.min_per_class}.")
            continue
        if options.max_per_class and len(files) > options.max_per_class:
            files = [files[i] for i in sorted(rng.choice(len(files), options.max_per_class, replace=False))]
        labels += [len(classes)] * len(files)
        classes.append(name)
        paths += files
    if len(classes) < 2:
        raise IngestError("Fewer than two classes have enough images; lower the minimum images per class.")
    return classes, paths, labels, warnings


def run_ingest(source: Path, out_dir: Path, options: IngestOptions, *, max_pixels: int, workers: int,
               progress: Progress = lambda f: None, fast_jpeg: bool = True) -> IngestResult:
    """Decode `source` (a folder of class folders) into arrays under `out_dir`."""
    classes, paths, labels, warnings = _select(scan_classes(source), options)
    spec = ImageSpec(options.width, options.height, options.channels, options.resize_mode, max_pixels, fast_jpeg)
    staging = out_dir / STAGING
    failures = decode_all(paths, spec, staging, seed=options.seed, workers=workers,
                          progress=lambda f: progress(0.9 * f))
    ok = np.ones(len(paths), dtype=bool)
    ok[[i for i, _, _ in failures]] = False
    label_array = np.asarray(labels, dtype=np.int64)
    _check_classes_readable(classes, label_array, ok)
    valid = np.flatnonzero(ok)
    splits = {s: valid[idx] for s, idx in stratified_split(label_array[valid], len(classes), options).items()}
    if len(splits["train"]) == 0:
        raise IngestError("No images are left for training; lower the validation and test percentages.")
    counts = write_outputs(out_dir, staging, label_array, splits, classes)
    progress(1.0)
    skipped = _skipped_report(failures, paths, source)
    return IngestResult(classes, {s: int(len(v)) for s, v in splits.items()}, counts, skipped, warnings)


def _check_classes_readable(classes: list[str], labels: np.ndarray, ok: np.ndarray) -> None:
    for index, name in enumerate(classes):
        if not ok[labels == index].any():
            raise IngestError(f"Class '{name}' has no readable images: every file in it failed to decode.")


def _skipped_report(failures: list[tuple[int, str, str]], paths: list[Path], source: Path) -> dict[str, object]:
    report: dict[str, object] = {"unreadable": 0, "too_large": 0}
    examples = []
    for index, kind, reason in failures:
        report[kind] = int(report[kind]) + 1  # type: ignore[call-overload]
        if len(examples) < 20:
            examples.append({"file": str(paths[index].relative_to(source)), "kind": kind, "reason": reason[:200]})
    report["examples"] = examples
    return report
