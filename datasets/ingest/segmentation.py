"""Segmentation datasets: images and masks of class indices, decoded into aligned arrays.

Layouts (under any single wrapping folder): `images/` and `masks/` with matching file stems, or
`train/`, `val/`, `test/` each holding both. Beside them, optional `classes.txt` (line i: the name
of class i) and `colormap.txt` (line i: `R G B` of class i). A mask is a single-channel PNG of class
indices, a palette PNG (index = class) or an RGB PNG mapped through colormap.txt.

Unlike classification nothing is skipped: an image and its mask make one example, so any problem
with either is an IngestError naming the file, and no arrays are left behind.
"""
from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from datasets.ingest import IngestError
from datasets.ingest.archive import IMAGE_EXTENSIONS, ZipSource
from datasets.ingest.images import (
    ImageRejected,
    ImageSpec,
    center_crop,
    load_image,
    place_centre,
    resize_image,
    scaled_size,
    to_chw,
)
from datasets.ingest.pipeline import SPLITS, IngestOptions, IngestResult, Opener, Progress, _visible, _walk
from datasets.ingest.store import STAGING, write_segmentation_outputs

# The files beside images/ and masks/ that an archive's extraction keeps (datasets.services).
SIDE_FILES = frozenset({"classes.txt", "colormap.txt"})
MASK_FORMATS = ("PNG", "BMP", "GIF")  # lossless only: a JPEG mask's edges hold values of no class
STAGING_MASKS = "staging_masks.npy"
_SIDE_FILE_BYTES = 1024 * 1024
_CHUNK = 32
_LAYOUT_HELP = ("a segmentation archive holds images/ and masks/ with matching file stems, or train/, val/ "
                "and test/ each holding both")


@dataclass(frozen=True)
class Pair:
    image: str  # names as the source's opener takes them
    mask: str
    split: str | None  # the split folder it came from; None when the seeded split decides


@dataclass(frozen=True)
class ClassInfo:
    names: list[str] | None  # from classes.txt
    colours: list[tuple[int, int, int]] | None  # from colormap.txt


# --- scanning -------------------------------------------------------------------------------

def scan_pairs(names: list[str], dirs: list[str] = ()) -> tuple[list[Pair], dict[str, str]]:  # type: ignore[assignment]
    """The image/mask pairs, and the side files found beside them ({"classes.txt": name, ...})."""
    files = sorted(p for p in (tuple(n.split("/")) for n in names) if _visible(p))
    folders = {p for p in (tuple(d.strip("/").split("/")) for d in dirs if d.strip("/")) if _visible(p)}
    folders |= {f[:i] for f in files for i in range(1, len(f))}
    root = _find_root(folders)
    children = {d[len(root)] for d in folders if len(d) > len(root) and d[: len(root)] == root}
    split_folders = [s for s in SPLITS if s in children]
    if split_folders:
        if "train" not in split_folders:
            raise IngestError(f"There is no train/ folder beside {', '.join(s + '/' for s in split_folders)}; "
                              f"{_LAYOUT_HELP}.")
        pairs = [p for s in split_folders for p in _pair(files, root + (s,), s)]
    elif children & {"images", "masks"}:
        pairs = _pair(files, root, None)
    else:
        raise IngestError(f"No images/ and masks/ folders were found: {_LAYOUT_HELP}.")
    side = {f[-1]: "/".join(f) for f in files if f[:-1] == root and f[-1] in SIDE_FILES}
    return pairs, side


def _find_root(folders: set[tuple[str, ...]]) -> tuple[str, ...]:
    """Descend through single wrapping folders down to the level holding images/masks or splits."""
    root: tuple[str, ...] = ()
    while True:
        children = {d[len(root)] for d in folders if len(d) > len(root) and d[: len(root)] == root}
        if children & ({"images", "masks"} | set(SPLITS)) or len(children) != 1:
            return root
        root = root + (children.pop(),)


def _stems(files: list[tuple[str, ...]], prefix: tuple[str, ...]) -> dict[str, str]:
    """{path under `prefix` without its suffix: full name} for the image files under `prefix`."""
    found: dict[str, str] = {}
    for f in files:
        if f[: len(prefix)] != prefix or len(f) == len(prefix) or PurePosixPath(f[-1]).suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        stem = "/".join(f[len(prefix) : -1] + (PurePosixPath(f[-1]).stem,))
        if stem in found:
            raise IngestError(f"'{found[stem]}' and '{'/'.join(f)}' share a file stem; each stem must be one file.")
        found[stem] = "/".join(f)
    return found


def _pair(files: list[tuple[str, ...]], base: tuple[str, ...], split: str | None) -> list[Pair]:
    where = "".join(part + "/" for part in base)
    images, masks = _stems(files, base + ("images",)), _stems(files, base + ("masks",))
    if not masks:
        raise IngestError(f"No masks were found in {where}masks/: every image needs a mask with its file stem.")
    if not images:
        raise IngestError(f"No images were found in {where}images/ beside the masks in {where}masks/.")
    for stem in sorted(images.keys() - masks.keys()):
        raise IngestError(f"The image '{images[stem]}' has no mask: expected {where}masks/{stem}.png.")
    for stem in sorted(masks.keys() - images.keys()):
        raise IngestError(f"The mask '{masks[stem]}' has no image: expected {where}images/{stem} "
                          "with any image extension.")
    return [Pair(images[stem], masks[stem], split) for stem in sorted(images)]


# --- classes.txt, colormap.txt --------------------------------------------------------------

def _read_text(opener: Opener, name: str) -> str:
    opened = opener(name)
    data = opened.read_bytes() if isinstance(opened, Path) else opened.read(_SIDE_FILE_BYTES + 1)
    if len(data) > _SIDE_FILE_BYTES:
        raise IngestError(f"'{name}' is larger than {_SIDE_FILE_BYTES // 1024} KiB; it should be one line per class.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise IngestError(f"'{name}' is not UTF-8 text.") from None


def _lines(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def read_class_info(opener: Opener, side: dict[str, str]) -> ClassInfo:
    names = colours = None
    if "classes.txt" in side:
        names = _class_names(_lines(_read_text(opener, side["classes.txt"])), side["classes.txt"])
    if "colormap.txt" in side:
        colours = _colours(_lines(_read_text(opener, side["colormap.txt"])), side["colormap.txt"])
    if names is not None and colours is not None and len(names) != len(colours):
        raise IngestError(f"'{side['classes.txt']}' names {len(names)} classes but '{side['colormap.txt']}' "
                          f"has {len(colours)} colours; line i of each is class i.")
    return ClassInfo(names, colours)


def _class_names(lines: list[str], name: str) -> list[str]:
    if not lines:
        raise IngestError(f"'{name}' is empty; line i names class i.")
    for number, line in enumerate(lines, 1):
        if not line:
            raise IngestError(f"Line {number} of '{name}' is empty; line i names class i.")
    if len(set(lines)) != len(lines):
        raise IngestError(f"'{name}' names a class twice; every class needs its own name.")
    return lines


def _colours(lines: list[str], name: str) -> list[tuple[int, int, int]]:
    colours = []
    for number, line in enumerate(lines, 1):
        parts = line.replace(",", " ").split()
        if len(parts) != 3 or not all(p.isdigit() and int(p) <= 255 for p in parts):
            raise IngestError(f"Line {number} of '{name}' is not 'R G B' (three numbers 0..255): '{line[:40]}'.")
        colours.append((int(parts[0]), int(parts[1]), int(parts[2])))
    if not colours:
        raise IngestError(f"'{name}' is empty; line i gives the 'R G B' colour of class i.")
    if len(set(colours)) != len(colours):
        raise IngestError(f"'{name}' gives two classes the same colour; every class needs its own.")
    return colours


# --- one mask -------------------------------------------------------------------------------

def read_mask(opened: Path | BinaryIO, name: str, colours: list[tuple[int, int, int]] | None,
              max_pixels: int) -> tuple[np.ndarray, list[int] | None]:
    """The mask's class indices (H, W) uint8 at its own size, and its palette if it has one."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(opened, formats=MASK_FORMATS)
            if img.width * img.height > max_pixels:
                raise IngestError(f"The mask '{name}' is {img.width}x{img.height} pixels, over the "
                                  f"{max_pixels:,} pixel cap.")
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise IngestError(f"The mask '{name}' is too large: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise IngestError(f"The mask '{name}' could not be read as a PNG ({exc or type(exc).__name__}); "
                          "masks are lossless PNG files.") from None
    return _indices(img, name, colours), img.getpalette() if img.mode == "P" else None


def _indices(img: Image.Image, name: str, colours: list[tuple[int, int, int]] | None) -> np.ndarray:
    if img.mode in ("P", "L"):
        return np.asarray(img, dtype=np.uint8)
    if img.mode in ("LA", "1"):
        return np.asarray(img.getchannel(0), dtype=np.uint8) // (255 if img.mode == "1" else 1)
    if img.mode.startswith("I"):
        values = np.asarray(img)
        if values.size and (values.max() > 255 or values.min() < 0):
            raise IngestError(f"The mask '{name}' holds the value {int(values.max())}; class indices and "
                              "ignore_index lie in 0..255.")
        return values.astype(np.uint8)
    if img.mode in ("RGB", "RGBA"):
        return _rgb_indices(np.asarray(img.convert("RGB")), name, colours)
    raise IngestError(f"The mask '{name}' has the image mode {img.mode}; masks are single-channel, palette "
                      "or RGB PNG files.")


def _rgb_indices(rgb: np.ndarray, name: str, colours: list[tuple[int, int, int]] | None) -> np.ndarray:
    if colours is None:
        raise IngestError(f"The mask '{name}' is an RGB image, but there is no colormap.txt to map its colours "
                          "to classes (line i: 'R G B' of class i).")
    codes = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    table = np.array([(r << 16) | (g << 8) | b for r, g, b in colours], dtype=np.int32)
    order = np.argsort(table)
    position = np.searchsorted(table[order], codes).clip(0, len(table) - 1)
    known = table[order][position] == codes
    if not known.all():
        code = int(codes[~known].flat[0])
        raise IngestError(f"The mask '{name}' has the colour ({code >> 16}, {(code >> 8) & 255}, {code & 255}), "
                          "which colormap.txt does not list.")
    return order[position].astype(np.uint8)


def resize_mask(mask: np.ndarray, spec: ImageSpec, ignore_index: int) -> np.ndarray:
    """The image's geometry (resize_image) with nearest neighbour: no new values; fill pads with ignore_index."""
    size = scaled_size(mask.shape[1], mask.shape[0], spec)
    scaled = np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))
    cropped = center_crop(scaled, spec.height, spec.width)
    if cropped.shape == (spec.height, spec.width):
        return cropped
    return place_centre(cropped, np.full((spec.height, spec.width), ignore_index, dtype=np.uint8))


# --- decode ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Decoding:
    pairs: list[Pair]
    opener: Opener
    spec: ImageSpec
    colours: list[tuple[int, int, int]] | None
    ignore_index: int
    seed: int


def _decode_pair(job: _Decoding, index: int, images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, list[int] | None]:
    """Decode one pair into row `index`; its histogram of mask values (at the mask's own size) and palette."""
    pair = job.pairs[index]
    try:
        image = load_image(job.opener(pair.image), job.spec)
    except ImageRejected as exc:
        raise IngestError(f"The image '{pair.image}' could not be used: {exc}") from None
    try:
        opened = job.opener(pair.mask)
    except ImageRejected as exc:
        raise IngestError(f"The mask '{pair.mask}' could not be read: {exc}") from None
    mask, palette = read_mask(opened, pair.mask, job.colours, job.spec.max_pixels)
    if (mask.shape[1], mask.shape[0]) != image.size:
        raise IngestError(f"The mask '{pair.mask}' is {mask.shape[1]}x{mask.shape[0]} pixels but its image "
                          f"'{pair.image}' is {image.width}x{image.height}; they must be the same size.")
    images[index] = to_chw(resize_image(image, job.spec, np.random.default_rng([job.seed, index])))
    masks[index] = resize_mask(mask, job.spec, job.ignore_index)
    return np.bincount(mask.ravel(), minlength=256), palette


def _decode_chunk(job: _Decoding, start: int, images: np.ndarray, masks: np.ndarray) -> list[tuple[np.ndarray, list[int] | None]]:
    stop = min(start + _CHUNK, len(job.pairs))
    return [_decode_pair(job, index, images, masks) for index in range(start, stop)]


def decode_pairs(job: _Decoding, out_dir: Path, *, workers: int,
                 progress: Progress) -> tuple[np.ndarray, list[int] | None]:
    """Every pair into staging arrays; (histograms (N, 256), the first palette seen)."""
    spec, n = job.spec, len(job.pairs)
    images = np.lib.format.open_memmap(out_dir / STAGING, mode="w+", dtype=np.uint8,
                                       shape=(n, spec.channels, spec.height, spec.width))
    masks = np.lib.format.open_memmap(out_dir / STAGING_MASKS, mode="w+", dtype=np.uint8, shape=(n, spec.height, spec.width))
    results: list[tuple[np.ndarray, list[int] | None]] = []
    pool = ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="ingest")
    try:
        futures = [pool.submit(_decode_chunk, job, start, images, masks) for start in range(0, n, _CHUNK)]
        for done, future in enumerate(futures, 1):
            results += future.result()  # the first failing pair, in file order, is the one reported
            progress(done / len(futures))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        images.flush()
        masks.flush()
        del images, masks
    palette = next((p for _, p in results if p is not None), None)
    return np.stack([h for h, _ in results]), palette


# --- classes, values, split -----------------------------------------------------------------

def class_names(info: ClassInfo, histograms: np.ndarray, ignore_index: int) -> list[str]:
    """From classes.txt, else as many as colormap.txt has colours, else the largest index seen + 1."""
    if info.names is not None:
        return info.names
    if info.colours is not None:
        return [f"class_{i}" for i in range(len(info.colours))]
    seen = np.flatnonzero(np.delete(histograms.sum(axis=0), ignore_index))
    if not len(seen):
        raise IngestError(f"Every mask pixel is ignore_index ({ignore_index}); the masks hold no classes.")
    largest = int(seen[-1]) + (1 if seen[-1] >= ignore_index else 0)
    return [f"class_{i}" for i in range(largest + 1)]


def check_values(pairs: list[Pair], histograms: np.ndarray, classes: list[str], ignore_index: int) -> None:
    n = len(classes)
    if ignore_index < n:
        raise IngestError(f"ignore_index {ignore_index} is also class {ignore_index} ('{classes[ignore_index]}'); "
                          f"with {n} classes choose an ignore_index of {n} or above.")
    outside = histograms[:, n:].copy()
    outside[:, ignore_index - n] = 0
    for index in np.flatnonzero(outside.any(axis=1)):
        value = n + int(np.flatnonzero(outside[index])[0])
        raise IngestError(f"The mask '{pairs[index].mask}' holds the value {value}, which is neither a class "
                          f"(0..{n - 1}) nor ignore_index ({ignore_index}).")


def split_indices(pairs: list[Pair], options: IngestOptions) -> dict[str, np.ndarray]:
    """The folders' splits if the archive has them, else a seeded random split by the percentages."""
    if pairs[0].split is not None:
        return {s: np.array([i for i, p in enumerate(pairs) if p.split == s], dtype=np.int64) for s in SPLITS}
    order = np.random.default_rng(options.seed).permutation(len(pairs))
    n_val = math.floor(len(pairs) * options.val_percent / 100 + 0.5)
    n_test = math.floor(len(pairs) * options.test_percent / 100 + 0.5)
    return {"train": order[n_val + n_test :], "val": order[:n_val], "test": order[n_val : n_val + n_test]}


# --- colours --------------------------------------------------------------------------------

def default_colour(index: int) -> tuple[int, int, int]:
    """PASCAL VOC's colour for a class index: distinct, with class 0 (background) black."""
    r = g = b = 0
    for bit in range(8):
        r |= ((index >> (3 * bit)) & 1) << (7 - bit)
        g |= ((index >> (3 * bit + 1)) & 1) << (7 - bit)
        b |= ((index >> (3 * bit + 2)) & 1) << (7 - bit)
    return r, g, b


def colour_map(classes: list[str], info: ClassInfo, palette: list[int] | None) -> dict[str, list[int]]:
    """class name -> [r, g, b]: colormap.txt's, else the masks' palette, else the default palette."""
    def colour(i: int) -> tuple[int, int, int]:
        if info.colours is not None:
            return info.colours[i]
        if palette is not None and len(palette) >= 3 * (i + 1):
            return palette[3 * i], palette[3 * i + 1], palette[3 * i + 2]
        return default_colour(i)
    return {name: list(colour(i)) for i, name in enumerate(classes)}


# --- the whole ingest -----------------------------------------------------------------------

def run_segmentation_ingest(source: Path | ZipSource, out_dir: Path, options: IngestOptions, *, max_pixels: int,
                            workers: int, progress: Progress = lambda f: None) -> IngestResult:
    """Decode `source` (a folder, or a checked zip read in place) into aligned image and mask arrays."""
    if isinstance(source, Path):
        names, dirs = _walk(source)
        opener: Opener = lambda name: source / name  # noqa: E731
    else:
        names, dirs, opener = source.names, source.dirs, source.open
    pairs, side = scan_pairs(names, dirs)
    info = read_class_info(opener, side)
    spec = ImageSpec(options.width, options.height, options.channels, options.resize_mode, max_pixels)
    job = _Decoding(pairs, opener, spec, info.colours, options.ignore_index, options.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        histograms, palette = decode_pairs(job, out_dir, workers=workers, progress=lambda f: progress(0.9 * f))
        classes = class_names(info, histograms, options.ignore_index)
        check_values(pairs, histograms, classes, options.ignore_index)
        splits = split_indices(pairs, options)
        if len(splits["train"]) == 0:
            raise IngestError("No images are left for training; lower the validation and test percentages.")
        colours = colour_map(classes, info, palette)
        counts, pixels = write_segmentation_outputs(out_dir, out_dir / STAGING, out_dir / STAGING_MASKS, splits,
                                                    classes, colours, options.ignore_index)
    finally:
        for staging in (STAGING, STAGING_MASKS):
            (out_dir / staging).unlink(missing_ok=True)
    progress(1.0)
    notes = [] if pairs[0].split is None or len(splits["val"]) else ["There is no val/ folder: the dataset has no "
                                                                      "validation images."]
    return IngestResult(classes, {s: int(len(v)) for s, v in splits.items()}, counts, {}, notes,
                        class_pixels=pixels, colormap=colours)
