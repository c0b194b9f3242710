"""The one-click examples, generated on the server with fixed seeds and no download: scikit-learn's
bundled handwritten digits as class folders, shapes on noisy backgrounds with exact masks, and shapes
on such backgrounds with exact boxes (a YOLO archive)."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def write_digits(folder: Path) -> int:
    from sklearn.datasets import load_digits

    digits = load_digits()
    for index, (pixels, target) in enumerate(zip(digits.images, digits.target)):
        class_folder = folder / str(int(target))
        class_folder.mkdir(parents=True, exist_ok=True)
        # The bundled pixels are 0..16 intensities; stretch them to the full 8-bit range.
        image = Image.fromarray(np.round(pixels * 255 / 16).astype(np.uint8), mode="L")
        image.save(class_folder / f"{index:04d}.png")
    return len(digits.images)


SHAPES = ("background", "circle", "square", "triangle")
SHAPES_COUNT = 480
SHAPES_SIDE = 64
SHAPES_SOURCE = f"generated shapes on noisy backgrounds ({SHAPES_COUNT} images, {SHAPES_SIDE}x{SHAPES_SIDE}, seed 0)"


def write_shapes(folder: Path, count: int = SHAPES_COUNT, seed: int = 0) -> int:
    """The segmentation example: circles, squares and triangles of random colours, sizes and places on
    textured, noisy backgrounds, each with its exact mask (class per shape, background 0), classes.txt."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image, mask = _shapes_scene(rng, SHAPES_SIDE)
        image.save(folder / "images" / f"{index:04d}.png")
        mask.save(folder / "masks" / f"{index:04d}.png")
    (folder / "classes.txt").write_text("\n".join(SHAPES) + "\n")
    return count


def _shapes_scene(rng: np.random.Generator, side: int) -> tuple[Image.Image, Image.Image]:
    from PIL import ImageDraw

    image = Image.fromarray(_background(rng, side, side))
    mask = Image.new("L", (side, side), 0)
    draw_image, draw_mask = ImageDraw.Draw(image), ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(1, 4))):
        shape = int(rng.integers(1, len(SHAPES)))
        size = int(rng.integers(side // 6, side // 2))
        x, y = (int(v) for v in rng.integers(0, side - size, size=2))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        for draw, fill in ((draw_image, colour), (draw_mask, shape)):
            _draw_shape(draw, SHAPES[shape], (x, y, x + size, y + size), fill)
    return image, mask


def _draw_shape(draw, shape: str, box: tuple[int, int, int, int], fill) -> None:  # type: ignore[no-untyped-def]
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A random colour gradient with stripes and noise: texture a network must learn to look past."""
    rows, columns = np.linspace(0.0, 1.0, height), np.linspace(0.0, 1.0, width)
    start, end = rng.integers(0, 256, size=(2, 3))
    gradient = start + (end - start) * rows[:, None, None] * np.ones((1, width, 1))
    period = rng.uniform(4, 16)
    stripes = 25 * np.sin(2 * np.pi * (columns[None, :] * width / period + rng.uniform()))[:, :, None]
    noise = rng.normal(0, 18, size=(height, width, 3))
    return np.clip(gradient + stripes + noise, 0, 255).astype(np.uint8)


DETECTION_CLASSES = ("circle", "square", "triangle")
DETECTION_COUNT = 600
DETECTION_WIDTH, DETECTION_HEIGHT = 128, 96
DETECTION_SOURCE = (f"generated shapes with exact boxes on noisy backgrounds ({DETECTION_COUNT} images, "
                    f"{DETECTION_WIDTH}x{DETECTION_HEIGHT}, YOLO labels, seed 0)")


def write_detection_zip(path: Path, count: int = DETECTION_COUNT, seed: int = 0) -> int:
    """The detection example as a YOLO archive: images/, labels/ (`class cx cy w h`, normalised) and
    data.yaml naming the classes. 1 to 6 circles, squares and triangles per image, 8 to 40 pixels across,
    of colours that stand out from the textured background, overlapping little; the boxes are exact."""
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w") as archive:
        for index in range(count):
            image, boxes = _detection_scene(rng, DETECTION_WIDTH, DETECTION_HEIGHT)
            png = io.BytesIO()
            image.save(png, format="PNG")
            archive.writestr(f"shapes/images/{index:04d}.png", png.getvalue(), zipfile.ZIP_STORED)
            archive.writestr(f"shapes/labels/{index:04d}.txt", "".join(_yolo_line(b, image.size) for b in boxes),
                             zipfile.ZIP_DEFLATED)
        names = "".join(f"  - {name}\n" for name in DETECTION_CLASSES)
        archive.writestr("shapes/data.yaml", f"# {DETECTION_SOURCE}\nnc: {len(DETECTION_CLASSES)}\nnames:\n{names}")
    return count


def _yolo_line(box: tuple[int, int, int, int, int], size: tuple[int, int]) -> str:
    cls, x1, y1, x2, y2 = box
    w, h = size
    return f"{cls} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}\n"


def _detection_scene(rng: np.random.Generator, width: int, height: int
                     ) -> tuple[Image.Image, list[tuple[int, int, int, int, int]]]:
    """An image and its boxes (class, x1, y1, x2, y2), continuous pixel edges: a shape drawn on pixels
    x1..x2-1 has the box [x1, x2)."""
    from PIL import ImageDraw

    background = _background(rng, width, height)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    boxes: list[tuple[int, int, int, int, int]] = []
    for _ in range(int(rng.integers(1, 7))):
        size = int(rng.integers(8, 41))
        x, y = int(rng.integers(0, width - size + 1)), int(rng.integers(0, height - size + 1))
        if any(_overlap((x, y, x + size, y + size), b[1:]) > 0.15 for b in boxes):
            continue  # a shape mostly hidden by another would be a box with nothing to see
        cls = int(rng.integers(0, len(DETECTION_CLASSES)))
        colour = _standing_out(rng, background[y : y + size, x : x + size].reshape(-1, 3).mean(axis=0))
        _draw_shape(draw, DETECTION_CLASSES[cls], (x, y, x + size - 1, y + size - 1), colour)
        boxes.append((cls, x, y, x + size, y + size))
    return image, boxes


def _overlap(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Intersection over the smaller box's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return max(w, 0) * max(h, 0) / smaller


def _standing_out(rng: np.random.Generator, behind: np.ndarray) -> tuple[int, int, int]:
    for _ in range(20):
        colour = rng.integers(0, 256, size=3)
        if np.abs(colour - behind).mean() > 90:
            break
    return tuple(int(c) for c in colour)  # type: ignore[return-value]
