"""The one-click examples, generated on the server with fixed seeds and no download: scikit-learn's
bundled handwritten digits as class folders, and shapes on noisy backgrounds with exact masks."""
from __future__ import annotations

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

    image = Image.fromarray(_background(rng, side))
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


def _background(rng: np.random.Generator, side: int) -> np.ndarray:
    """A random colour gradient with stripes and noise: texture a network must learn to look past."""
    ramp = np.linspace(0.0, 1.0, side)
    start, end = rng.integers(0, 256, size=(2, 3))
    gradient = start + (end - start) * ramp[:, None, None] * np.ones((1, side, 1))
    period = rng.uniform(4, 16)
    stripes = 25 * np.sin(2 * np.pi * (ramp[None, :] * side / period + rng.uniform()))[:, :, None]
    noise = rng.normal(0, 18, size=(side, side, 3))
    return np.clip(gradient + stripes + noise, 0, 255).astype(np.uint8)
