"""Decoding and resizing one image, as DIGITS defines its four resize modes."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP")
RESIZE_MODES = ("squash", "crop", "fill", "half_crop")


class ImageRejected(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind  # "unreadable" or "too_large"


@dataclass(frozen=True)
class ImageSpec:
    width: int
    height: int
    channels: int
    resize_mode: str
    max_pixels: int
    fast_jpeg: bool = True


def load_image(path: Path | str, spec: ImageSpec) -> Image.Image:
    """Open with a format allowlist and a pixel cap; the cap is checked before any decode."""
    return _load_image(path, spec)[0]


def _load_image(path: Path | str, spec: ImageSpec) -> tuple[Image.Image, tuple[int, int]]:
    """The image as `load_image` gives it, and its own (width, height) as a viewer shows it: read
    from the header before JPEG draft mode shrinks it, turned as its EXIF orientation turns it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path, formats=FORMATS)
            width, height = img.size
            if width * height > spec.max_pixels:
                raise ImageRejected("too_large", f"{width}x{height} pixels is over the {spec.max_pixels:,} pixel cap")
            own = (height, width) if img.getexif().get(_ORIENTATION, 1) in _TURNED else (width, height)
            if spec.fast_jpeg and img.format == "JPEG":
                # Let libjpeg decode at a reduced scale; still at least twice the target size.
                img.draft("RGB" if spec.channels == 3 else "L", (spec.width * 2, spec.height * 2))
            img = ImageOps.exif_transpose(img) or img
            return img.convert("RGB" if spec.channels == 3 else "L"), own
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected("too_large", str(exc)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageRejected("unreadable", str(exc) or type(exc).__name__) from None


_ORIENTATION = 0x0112  # the EXIF tag; values 5 to 8 turn the image a quarter, swapping width and height
_TURNED = (5, 6, 7, 8)


def scaled_size(width: int, height: int, spec: ImageSpec) -> tuple[int, int]:
    """The (width, height) an image of this size is scaled to before the centre crop or fill."""
    w, h = spec.width, spec.height
    if spec.resize_mode == "squash":
        return w, h
    width_ratio, height_ratio = width / w, height / h
    if spec.resize_mode == "crop":
        ratio = min(width_ratio, height_ratio)
    elif spec.resize_mode == "fill":
        ratio = max(width_ratio, height_ratio)
    elif spec.resize_mode == "half_crop":
        ratio = (width_ratio + height_ratio) / 2
    else:
        raise ValueError(f"unknown resize mode {spec.resize_mode!r}")
    return max(1, round(width / ratio)), max(1, round(height / ratio))


def resize_image(img: Image.Image, spec: ImageSpec, rng: np.random.Generator) -> np.ndarray:
    """Resize to (height, width[, channels]) uint8 by the spec's resize mode."""
    scaled = np.asarray(img.resize(scaled_size(img.width, img.height, spec), Image.Resampling.BILINEAR))
    return _fit(center_crop(scaled, spec.height, spec.width), spec.height, spec.width, rng)


def center_crop(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    top = max(0, (arr.shape[0] - h) // 2)
    left = max(0, (arr.shape[1] - w) // 2)
    return arr[top : top + h, left : left + w]


def _fit(arr: np.ndarray, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Pad the short dimension with random noise, as DIGITS' fill and half-crop do."""
    if arr.shape[0] == h and arr.shape[1] == w:
        return arr
    return place_centre(arr, rng.integers(0, 256, size=(h, w) + arr.shape[2:], dtype=np.uint8))


def place_centre(arr: np.ndarray, background: np.ndarray) -> np.ndarray:
    """`arr` (no larger than `background`) written into the middle of `background`."""
    top = (background.shape[0] - arr.shape[0]) // 2
    left = (background.shape[1] - arr.shape[1]) // 2
    background[top : top + arr.shape[0], left : left + arr.shape[1]] = arr
    return background


def to_chw(arr: np.ndarray) -> np.ndarray:
    return arr[np.newaxis] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def decode(path: Path | str, spec: ImageSpec, rng: np.random.Generator) -> np.ndarray:
    """One image file to a (C, H, W) uint8 array."""
    return decode_sized(path, spec, rng)[0]


def decode_sized(path: Path | str, spec: ImageSpec, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int]]:
    """`decode`, and the file's own (width, height): from the one read, so an upload is read once."""
    img, own = _load_image(path, spec)
    return to_chw(resize_image(img, spec, rng)), own
