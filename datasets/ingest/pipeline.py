"""The ingest pipeline: scan class folders, decode in parallel, split, write arrays."""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from datasets.ingest import IngestError
from datasets.ingest.archive import IMAGE_EXTENSIONS, ZipSource
from datasets.ingest.images import ImageRejected, ImageSpec, decode
from datasets.ingest.store import STAGING, write_outputs

SPLITS = ("train", "val", "test")
_CHUNK = 64
Progress = Callable[[float], None]
Opener = Callable[[str], "Path | BinaryIO"]


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
    task: str = "classification"  # training.vision_tasks; segmentation and detection: datasets.ingest.<task>
    ignore_index: int = 255  # segmentation: the mask value that counts as no class
    box_format: str = ""  # detection: "" (read from the files), kitti, yolo, voc or coco


@dataclass
class IngestResult:
    classes: list[str]
    split_counts: dict[str, int]
    class_counts: dict[str, dict[str, int]]
    skipped: dict[str, object]
    warnings: list[str] = field(default_factory=list)
    class_pixels: dict[str, dict[str, float]] | None = None  # segmentation: {split: {class: fraction}}
    colormap: dict[str, list[int]] | None = None  # segmentation and detection: {class: [r, g, b]}
    box_format: str = ""  # detection: the format the labels were read as
    box_counts: dict[str, dict[str, int]] | None = None  # detection: {split: {class: boxes}}
    boxes_dropped: int | None = None  # detection: boxes left with no area once resized and clipped
    images_without_boxes: dict[str, int] | None = None  # detection: {split: images with no box of a class}


# --- scanning -------------------------------------------------------------------------------

def _visible(parts: tuple[str, ...]) -> bool:
    return not any(p.startswith(".") or p == "__MACOSX" for p in parts)


def find_root(files: list[tuple[str, ...]], dirs: set[tuple[str, ...]]) -> tuple[str, ...]:
    """Descend through single wrapping folders (`mydata/cats`, `mydata/dogs` → `mydata`)."""
    root: tuple[str, ...] = ()
    while True:
        depth = len(root)
        below = [f for f in files if f[:depth] == root]
        if any(len(f) == depth + 1 for f in below):
            return root  # files right here: this is the level of the class folders
        children = {f[depth] for f in below} | {d[depth] for d in dirs if len(d) > depth and d[:depth] == root}
        if len(children) != 1:
            return root
        root = root + (children.pop(),)


def scan_names(names: list[str], dirs: list[str] = ()) -> dict[str, list[str]]:  # type: ignore[assignment]
    """Classes and their image files from relative paths alone, for a folder and a zip alike.

    Top-level folders (under any single wrapping folder) are the classes; nested folders are
    flattened into their class; hidden files and __MACOSX are ignored.
    """
    files = sorted(p for p in (tuple(n.split("/")) for n in names) if _visible(p))
    folders = {p for p in (tuple(d.strip("/").split("/")) for d in dirs if d.strip("/")) if _visible(p)}
    folders |= {f[:i] for f in files for i in range(1, len(f))}
    root = find_root(files, folders)
    depth = len(root)
    classes = sorted({d[depth] for d in folders if len(d) > depth and d[:depth] == root})
    images = [f for f in files if f[:depth] == root and Path(f[-1]).suffix.lower() in IMAGE_EXTENSIONS]
    if not classes:
        if root and any(len(f) == depth + 1 for f in images):
            # The only folder looked like a wrapper, but it holds the images: one class.
            raise IngestError(f"Only one class folder was found ('{root[-1]}'); at least two are needed.")
        raise IngestError("No class folders found: the data must hold one folder per class, each with images.")
    if len(classes) == 1:
        raise IngestError(f"Only one class folder was found ('{classes[0]}'); at least two are needed.")
    found: dict[str, list[str]] = {name: [] for name in classes}
    for f in images:
        if len(f) > depth + 1:
            found[f[depth]].append("/".join(f))
    if not any(found.values()):
        raise IngestError("The class folders hold no image files (JPEG, PNG, BMP, GIF or WebP).")
    empty = [name for name, paths in found.items() if not paths]
    if empty:
        raise IngestError(f"Class '{empty[0]}' has no image files; every class folder needs at least one image.")
    return found


def _walk(folder: Path) -> tuple[list[str], list[str]]:
    """Relative file and folder names under `folder`; links leading out of it are left out."""
    allowed = folder.resolve()
    names, dirs = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not (here / d).is_symlink())
        dirs += [(here / d).relative_to(folder).as_posix() for d in dirnames]
        for name in filenames:
            path = here / name
            if path.is_symlink() and not path.resolve().is_relative_to(allowed):
                continue
            names.append(path.relative_to(folder).as_posix())
    return names, dirs


def scan_classes(folder: Path) -> dict[str, list[Path]]:
    """Classes and their image files in a folder of class folders."""
    names, dirs = _walk(folder)
    return {name: [folder / f for f in files] for name, files in scan_names(names, dirs).items()}


# --- parallel decode ------------------------------------------------------------------------

def _decode_chunk(out: np.ndarray, start: int, names: list[str], opener: Opener, spec: ImageSpec,
                  seed: int) -> list[tuple[int, str, str]]:
    """Decode into rows of `out`; return (index, kind, reason) for each image that failed."""
    failures = []
    for offset, name in enumerate(names):
        index = start + offset
        rng = np.random.default_rng([seed, index])
        try:
            opened = opener(name)
            out[index] = decode(opened, spec, rng)
        except ImageRejected as exc:
            failures.append((index, exc.kind, str(exc).replace(str(opened), Path(name).name)))
    return failures


def ingest_workers(configured: int) -> int:
    return configured if configured > 0 else (os.cpu_count() or 1)


def decode_all(names: list[str], opener: Opener, spec: ImageSpec, staging: Path, *, seed: int, workers: int,
               progress: Progress) -> list[tuple[int, str, str]]:
    """Decode every image into a staging array on disk, `workers` images at a time.

    Threads, not processes: Pillow releases the GIL while it decodes and resizes, so threads
    scale about as well as processes here, without spawn start-up or copying pixels around.
    """
    out = np.lib.format.open_memmap(staging, mode="w+", dtype=np.uint8,
                                    shape=(len(names), spec.channels, spec.height, spec.width))
    starts = range(0, len(names), _CHUNK)
    failures: list[tuple[int, str, str]] = []
    with ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="ingest") as pool:
        jobs = [pool.submit(_decode_chunk, out, i, names[i : i + _CHUNK], opener, spec, seed) for i in starts]
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

def _select(found: dict[str, list[str]], options: IngestOptions) -> tuple[list[str], list[str], list[int], list[str]]:
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


def run_ingest(source: Path | ZipSource, out_dir: Path, options: IngestOptions, *, max_pixels: int, workers: int,
               progress: Progress = lambda f: None, fast_jpeg: bool = True) -> IngestResult:
    """Decode `source` (a folder of class folders, or a checked zip read in place) into arrays under `out_dir`."""
    if isinstance(source, Path):
        names, dirs = _walk(source)
        opener: Opener = lambda name: source / name  # noqa: E731
    else:
        names, dirs, opener = source.names, source.dirs, source.open
    classes, paths, labels, warnings = _select(scan_names(names, dirs), options)
    spec = ImageSpec(options.width, options.height, options.channels, options.resize_mode, max_pixels, fast_jpeg)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / STAGING
    failures = decode_all(paths, opener, spec, staging, seed=options.seed, workers=workers,
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
    skipped = _skipped_report(failures, paths)
    return IngestResult(classes, {s: int(len(v)) for s, v in splits.items()}, counts, skipped, warnings)


def _check_classes_readable(classes: list[str], labels: np.ndarray, ok: np.ndarray) -> None:
    for index, name in enumerate(classes):
        if not ok[labels == index].any():
            raise IngestError(f"Class '{name}' has no readable images: every file in it failed to decode.")


def _skipped_report(failures: list[tuple[int, str, str]], names: list[str]) -> dict[str, object]:
    report: dict[str, object] = {"unreadable": 0, "too_large": 0}
    examples = []
    for index, kind, reason in failures:
        report[kind] = int(report[kind]) + 1  # type: ignore[call-overload]
        if len(examples) < 20:
            examples.append({"file": names[index], "kind": kind, "reason": reason[:200]})
    report["examples"] = examples
    return report
