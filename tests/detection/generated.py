"""Detection datasets made here, with exact boxes, written as an ingested detection dataset's files
(the task contract: {split}_images.npy, {split}_boxes.npy, mean.npy): the tests' tiny ones and
bench/detection.py's larger ones.

- "digits": sklearn's 8x8 handwritten digits (0, 1, 2, ... one class each), scaled to 12-34 px,
  tinted, pasted on noisy textured backgrounds; each box is the tight box of the digit's ink.
- "shapes": filled squares (class 0), discs (class 1) and triangles (class 2) of random colours.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def write_detection_dataset(folder: Path, *, train: int = 24, val: int = 8, size: tuple[int, int] = (32, 32),
                            classes: int = 2, max_boxes: int = 2, kind: str = "shapes", sides: tuple[int, int] = (7, 13),
                            seed: int = 0, extras: bool = False) -> Path:
    """`size` (height, width); 1..max_boxes objects an image, their sides in `sides` (pixels).
    `extras`: the last box of every third image is a flag-1 (difficult) box, and the val split gets
    a DontCare (class -2) region in every fourth image."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    digits = _digits(classes) if kind == "digits" else None
    for split, count in (("train", train), ("val", val)):
        images, rows = [], []
        for i in range(count):
            image, boxes = _scene(rng, size, classes, max_boxes, sides, digits)
            if extras and i % 3 == 2 and boxes:
                boxes[-1][5] = 1.0
            if extras and split == "val" and i % 4 == 3:
                boxes.append([-2.0, 0.0, 0.0, size[1] / 4, size[0] / 4, 0.0])
            images.append(image)
            rows.append(boxes)
        np.save(folder / f"{split}_images.npy", np.stack(images))
        np.save(folder / f"{split}_boxes.npy", pad_boxes(rows, max_boxes + 1))
    np.save(folder / "mean.npy", np.load(folder / "train_images.npy").mean(axis=0).astype(np.float32))
    (folder / "classes.json").write_text(json.dumps(class_names(classes, kind)))
    return folder


def class_names(classes: int, kind: str = "shapes") -> list[str]:
    return [f"digit_{d}" for d in range(classes)] if kind == "digits" else ["square", "disc", "triangle"][:classes]


def pad_boxes(rows: list[list[list[float]]], k: int) -> np.ndarray:
    """(N, K, 6) float32: each image's rows, then padding rows (class -1, all else 0)."""
    out = np.zeros((len(rows), k, 6), np.float32)
    out[:, :, 0] = -1
    for i, boxes in enumerate(rows):
        if boxes:
            out[i, : len(boxes)] = boxes
    return out


def _digits(classes: int) -> list[np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return [data.images[data.target == d] / 16.0 for d in range(classes)]


def _background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    base = rng.integers(20, 110, 3)
    coarse = rng.normal(0, 25, (max(h // 8, 1), max(w // 8, 1), 3))
    texture = np.asarray(Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8)).resize((w, h)), float) - 128
    return np.clip(base + texture + rng.normal(0, 12, (h, w, 3)), 0, 255)


def _scene(rng: np.random.Generator, size: tuple[int, int], classes: int, max_boxes: int,
           sides: tuple[int, int], digits: list[np.ndarray] | None) -> tuple[np.ndarray, list[list[float]]]:
    h, w = size
    canvas = _background(rng, size)
    boxes: list[list[float]] = []
    for _ in range(int(rng.integers(1, max_boxes + 1))):
        for _attempt in range(20):
            side = int(rng.integers(sides[0], sides[1] + 1))
            top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            if all(_iou((left, top, left + side, top + side), b[1:5]) < 0.1 for b in boxes):
                break
        else:
            continue
        cls = int(rng.integers(0, classes))
        ink = _digit_ink(rng, digits[cls], side) if digits is not None else _shape_ink(cls, side)
        colour = rng.integers(150, 256, 3) if rng.random() < 0.5 else rng.integers(0, 40, 3)
        patch = canvas[top : top + side, left : left + side]
        patch[:] = patch * (1 - ink[..., None]) + colour * ink[..., None]
        ys, xs = np.nonzero(ink > 0.5)
        if len(xs) == 0:
            continue
        boxes.append([float(cls), float(left + xs.min()), float(top + ys.min()), float(left + xs.max() + 1),
                      float(top + ys.max() + 1), 0.0])
    return canvas.astype(np.uint8).transpose(2, 0, 1), boxes


def _digit_ink(rng: np.random.Generator, examples: np.ndarray, side: int) -> np.ndarray:
    digit = examples[int(rng.integers(0, len(examples)))]
    return np.asarray(Image.fromarray((digit * 255).astype(np.uint8)).resize((side, side), Image.Resampling.BILINEAR),
                      float) / 255.0


def _shape_ink(cls: int, side: int) -> np.ndarray:
    ink = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(ink)
    if cls == 0:
        draw.rectangle((0, 0, side - 1, side - 1), fill=255)
    elif cls == 1:
        draw.ellipse((0, 0, side - 1, side - 1), fill=255)
    else:
        draw.polygon([(side / 2, 0), (side - 1, side - 1), (0, side - 1)], fill=255)
    return np.asarray(ink, float) / 255.0


def _iou(a: tuple[float, ...] | list[float], b: tuple[float, ...] | list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
