"""The on-disk layout of an ingested dataset, written once and memory-mapped by training.

    <dataset>/train_images.npy  uint8 (N, C, H, W)    <dataset>/train_labels.npy  int64 (N,)
    <dataset>/val_*.npy, test_*.npy                    <dataset>/classes.json
    <dataset>/mean.npy float32 (C, H, W), mean.png     <dataset>/thumbs/<class>_<k>.png

A segmentation dataset has masks instead of labels and thumbnails (datasets.ingest.segmentation):

    <dataset>/train_masks.npy   uint8 (N, H, W), class indices, ignore_index kept
    <dataset>/colormap.json     {class: [r, g, b]}

A detection dataset has boxes instead (datasets.ingest.detection), and thumbnails per class of images
holding that class:

    <dataset>/train_boxes.npy   float32 (N, K, 6), rows [class, x1, y1, x2, y2, flag] in the stored
                                image's pixels; padding rows class -1; class -2 a DontCare region;
                                flag 1 difficult or crowd
"""
from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

STAGING = "staging.npy"
THUMBS_PER_CLASS = 8
_COPY_ROWS = 2048


def images_path(folder: Path, split: str) -> Path:
    return folder / f"{split}_images.npy"


def labels_path(folder: Path, split: str) -> Path:
    return folder / f"{split}_labels.npy"


def masks_path(folder: Path, split: str) -> Path:
    return folder / f"{split}_masks.npy"


def boxes_path(folder: Path, split: str) -> Path:
    return folder / f"{split}_boxes.npy"


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


@dataclass(frozen=True)
class DetectionFigures:
    box_counts: dict[str, dict[str, int]]  # {split: {class: boxes}}, difficult and crowd boxes included
    images_with: dict[str, dict[str, int]]  # {split: {class: images holding a box of it}}
    images_without_boxes: dict[str, int]  # {split: images holding no box of any class}


def write_detection_outputs(folder: Path, staging_images: Path, boxes: np.ndarray, splits: dict[str, np.ndarray],
                            classes: list[str], colormap: dict[str, list[int]]) -> DetectionFigures:
    """The split arrays (images, boxes (N, K, 6)), mean, classes, colours and per-class thumbnails."""
    images = np.load(staging_images, mmap_mode="r")
    counts, holding, empty = {}, {}, {}
    for split, index in splits.items():
        _copy_rows(images, index, images_path(folder, split))
        rows = boxes[index]
        np.save(boxes_path(folder, split), rows)
        labels = rows[:, :, 0].astype(np.int64)
        counts[split] = {name: int((labels == c).sum()) for c, name in enumerate(classes)}
        holding[split] = {name: int((labels == c).any(axis=1).sum()) for c, name in enumerate(classes)}
        empty[split] = int((~(labels >= 0).any(axis=1)).sum()) if len(rows) else 0
    (folder / "classes.json").write_text(json.dumps(classes))
    (folder / "colormap.json").write_text(json.dumps(colormap))
    _write_mean(folder, images, splits["train"])
    _write_box_thumbs(folder, images, boxes, splits, len(classes))
    del images
    return DetectionFigures(counts, holding, empty)


def _write_box_thumbs(folder: Path, source: np.ndarray, boxes: np.ndarray, splits: dict[str, np.ndarray],
                      n_classes: int) -> None:
    (folder / "thumbs").mkdir(exist_ok=True)
    order = np.concatenate([splits["train"], splits["val"], splits["test"]])
    for class_index in range(n_classes):
        picks = order[(boxes[order, :, 0] == class_index).any(axis=1)][:THUMBS_PER_CLASS]
        for k, row in enumerate(picks):
            to_pil(np.asarray(source[row])).save(thumb_path(folder, class_index, k))


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


def boxes_png(folder: Path, split: str, index: int, classes: list[str], colours: list[list[int]]) -> bytes | None:
    """One image of a detection split with its boxes drawn and labelled (enlarged so that small images
    still show the labels), as PNG; None if there is no such image."""
    images, boxes = images_path(folder, split), boxes_path(folder, split)
    if not images.exists() or not boxes.exists():
        return None
    pixels = np.load(images, mmap_mode="r")
    if not 0 <= index < len(pixels):
        return None
    buffer = io.BytesIO()
    draw_boxes(np.asarray(pixels[index]), np.load(boxes, mmap_mode="r")[index], classes, colours).save(buffer, "PNG")
    return buffer.getvalue()


BOXED_MIN_WIDTH = 256


def draw_boxes(chw: np.ndarray, rows: np.ndarray, classes: list[str], colours: list[list[int]]) -> Image.Image:
    """The image, enlarged by a whole factor to at least BOXED_MIN_WIDTH pixels wide, with each box outlined
    in its class's colour and named; DontCare regions and difficult/crowd boxes dashed grey."""
    scale = max(1, -(-BOXED_MIN_WIDTH // chw.shape[2]))
    image = to_pil(chw).convert("RGB")
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    draw, font = ImageDraw.Draw(image), ImageFont.load_default()
    for cls, x1, y1, x2, y2, flag in np.asarray(rows, dtype=np.float64):
        if cls == -1:
            continue
        box = [x1 * scale, y1 * scale, x2 * scale - 1, y2 * scale - 1]
        if cls < 0 or flag:
            _dashed(draw, box, (160, 160, 160))
            label = "DontCare" if cls < 0 else f"{classes[int(cls)]} (ignored)"
        else:
            draw.rectangle(box, outline=tuple(colours[int(cls)]), width=2)
            label = classes[int(cls)]
        _label(draw, font, (box[0], box[1]), label, (160, 160, 160) if cls < 0 or flag else tuple(colours[int(cls)]))
    return image


def _dashed(draw: ImageDraw.ImageDraw, box: list[float], colour: tuple[int, int, int]) -> None:
    x1, y1, x2, y2 = box
    for start in np.arange(x1, x2, 6):
        draw.line([(start, y1), (min(start + 3, x2), y1)], fill=colour)
        draw.line([(start, y2), (min(start + 3, x2), y2)], fill=colour)
    for start in np.arange(y1, y2, 6):
        draw.line([(x1, start), (x1, min(start + 3, y2))], fill=colour)
        draw.line([(x2, start), (x2, min(start + 3, y2))], fill=colour)


def _label(draw: ImageDraw.ImageDraw, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, corner: tuple[float, float],
           text: str, colour: tuple[int, ...]) -> None:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x, y = corner[0], max(0.0, corner[1] - (bottom - top) - 3)
    draw.rectangle([x, y, x + right - left + 4, y + bottom - top + 3], fill=colour)
    draw.text((x + 2 - left, y + 1 - top), text, fill=(255, 255, 255), font=font)
