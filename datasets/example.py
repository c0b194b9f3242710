"""The one-click example: scikit-learn's bundled handwritten digits, written as class folders."""
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
