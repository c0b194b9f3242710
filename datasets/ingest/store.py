"""The on-disk layout of an ingested dataset, written once and memory-mapped by training.

    <dataset>/train_images.npy  uint8 (N, C, H, W)    <dataset>/train_labels.npy  int64 (N,)
    <dataset>/val_*.npy, test_*.npy                    <dataset>/classes.json
    <dataset>/mean.npy float32 (C, H, W), mean.png     <dataset>/thumbs/<class>_<k>.png

A segmentation dataset has masks instead of labels and thumbnails (datasets.ingest.segmentation):

    <dataset>/train_masks.npy   uint8 (N, H, W), class indices, ignore_index kept
    <dataset>/colormap.json     {class: [r, g, b]}
"""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

STAGING = "staging.npy"
THUMBS_PER_CLASS = 8
_COPY_ROWS = 2048


def images_path(folder: Path, split: str) -> Path:
    return folder / f"{split}_images.npy"


def labels_path(folder: Path, split: str) -> Path:
    return folder / f"{split}_labels.npy"


def masks_path(folder: Path, split: str) -> Path:
    return folder / f"{split}_masks.npy"


def open_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The split's images memory-mapped read-only, and its labels."""
    return np.load(images_path(folder, split), mmap_mode="r"), np.load(labels_path(folder, split))


def thumb_path(folder: Path, class_index: int, k: int) -> Path:
    return folder / "thumbs" / f"{class_index}_{k}.png"


def to_pil(chw: np.ndarray) -> Image.Image:
    return Image.fromarray(chw[0] if chw.shape[0] == 1 else chw.transpose(1, 2, 0))


def png_data_url(chw: np.ndarray) -> str:
    """A uint8 (C, H, W) image as a data: URL, for a page or a JSON answer to show."""
    buf = io.BytesIO()
    to_pil(chw).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def write_outputs(folder: Path, staging: Path, labels: np.ndarray, splits: dict[str, np.ndarray],
                  classes: list[str]) -> dict[str, dict[str, int]]:
    source = np.load(staging, mmap_mode="r")
    for split, index in splits.items():
        _copy_rows(source, index, images_path(folder, split))
        np.save(labels_path(folder, split), labels[index])
    (folder / "classes.json").write_text(json.dumps(classes))
    _write_mean(folder, source, splits["train"])
    _write_thumbs(folder, source, labels, splits, len(classes))
    del source
    staging.unlink()
    return {split: {name: int((labels[index] == i).sum()) for i, name in enumerate(classes)}
            for split, index in splits.items()}


def write_segmentation_outputs(folder: Path, staging_images: Path, staging_masks: Path, splits: dict[str, np.ndarray],
                               classes: list[str], colormap: dict[str, list[int]], ignore_index: int
                               ) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, float]]]:
    """The split arrays, mean, classes and colours; (images holding each class, pixel share of each class)
    per split, ignore_index pixels left out of the shares."""
    images, masks = np.load(staging_images, mmap_mode="r"), np.load(staging_masks, mmap_mode="r")
    counts, pixels = {}, {}
    for split, index in splits.items():
        _copy_rows(images, index, images_path(folder, split))
        _copy_rows(masks, index, masks_path(folder, split))
        counts[split], pixels[split] = _mask_figures(np.load(masks_path(folder, split), mmap_mode="r"),
                                                     classes, ignore_index)
    (folder / "classes.json").write_text(json.dumps(classes))
    (folder / "colormap.json").write_text(json.dumps(colormap))
    _write_mean(folder, images, splits["train"])
    del images, masks
    return counts, pixels


def _mask_figures(masks: np.ndarray, classes: list[str], ignore_index: int) -> tuple[dict[str, int], dict[str, float]]:
    present = np.zeros(256, dtype=np.int64)
    total = np.zeros(256, dtype=np.int64)
    for start in range(0, len(masks), _COPY_ROWS):
        chunk = np.asarray(masks[start : start + _COPY_ROWS]).reshape(-1, masks.shape[1] * masks.shape[2])
        per_image = np.stack([np.bincount(row, minlength=256) for row in chunk]) if len(chunk) else np.zeros((0, 256))
        present += (per_image > 0).sum(axis=0).astype(np.int64)
        total += per_image.sum(axis=0).astype(np.int64)
    total[ignore_index] = 0
    labelled = max(int(total.sum()), 1)
    return ({name: int(present[i]) for i, name in enumerate(classes)},
            {name: float(total[i] / labelled) for i, name in enumerate(classes)})


def _copy_rows(source: np.ndarray, index: np.ndarray, target: Path) -> None:
    out = np.lib.format.open_memmap(target, mode="w+", dtype=np.uint8, shape=(len(index),) + source.shape[1:])
    for start in range(0, len(index), _COPY_ROWS):
        rows = index[start : start + _COPY_ROWS]
        out[start : start + len(rows)] = source[np.sort(rows)][np.argsort(np.argsort(rows))]
    out.flush()


def _write_mean(folder: Path, source: np.ndarray, index: np.ndarray) -> None:
    total = np.zeros(source.shape[1:], dtype=np.float64)
    for start in range(0, len(index), _COPY_ROWS):
        total += source[np.sort(index[start : start + _COPY_ROWS])].sum(axis=0, dtype=np.float64)
    mean = (total / max(len(index), 1)).astype(np.float32)
    np.save(folder / "mean.npy", mean)
    to_pil(np.clip(mean + 0.5, 0, 255).astype(np.uint8)).save(folder / "mean.png")


def _write_thumbs(folder: Path, source: np.ndarray, labels: np.ndarray, splits: dict[str, np.ndarray],
                  n_classes: int) -> None:
    (folder / "thumbs").mkdir(exist_ok=True)
    order = np.concatenate([splits["train"], splits["val"], splits["test"]])
    for class_index in range(n_classes):
        picks = order[labels[order] == class_index][:THUMBS_PER_CLASS]
        for k, row in enumerate(picks):
            to_pil(np.asarray(source[row])).save(thumb_path(folder, class_index, k))


def thumb_counts(folder: Path, n_classes: int) -> list[int]:
    return [sum(1 for k in range(THUMBS_PER_CLASS) if thumb_path(folder, c, k).exists()) for c in range(n_classes)]


def image_png(folder: Path, split: str, index: int) -> bytes | None:
    """One image of a split encoded as PNG, or None if there is no such image."""
    path = images_path(folder, split)
    if not path.exists():
        return None
    images = np.load(path, mmap_mode="r")
    if not 0 <= index < len(images):
        return None
    buffer = io.BytesIO()
    to_pil(np.asarray(images[index])).save(buffer, format="PNG")
    return buffer.getvalue()


def mask_png(folder: Path, split: str, index: int, colours: list[list[int]], ignore_index: int) -> bytes | None:
    """One mask of a split as an RGBA PNG in its classes' colours, ignore_index (and any value without a
    colour) transparent; None if there is no such mask."""
    path = masks_path(folder, split)
    if not path.exists():
        return None
    masks = np.load(path, mmap_mode="r")
    if not 0 <= index < len(masks):
        return None
    return coloured_mask_png(np.asarray(masks[index]), colours, ignore_index)


def coloured_mask_png(mask: np.ndarray, colours: list[list[int]], ignore_index: int = 255) -> bytes:
    """A (H, W) mask of class indices as an RGBA PNG in the classes' colours (`colours[i]`: class i's
    [r, g, b]); ignore_index and any value without a colour transparent."""
    table = np.zeros((max(256, int(mask.max(initial=0)) + 1), 4), dtype=np.uint8)
    for value, colour in enumerate(colours[: len(table)]):
        table[value] = (*colour, 255)
    if ignore_index < len(table):
        table[ignore_index] = 0
    buffer = io.BytesIO()
    Image.fromarray(table[mask], "RGBA").save(buffer, format="PNG")
    return buffer.getvalue()
