"""Detection datasets: images and their boxes, decoded into images and box arrays aligned row by row.

Layouts (under any single wrapping folder): `images/` and `labels/` with matching file stems (one label
file per image: KITTI or YOLO `.txt`, Pascal VOC `.xml`), or `images/` and one COCO `annotations.json`,
or `train/`, `val/`, `test/` each holding those. YOLO's class names come from `classes.txt` or
`data.yaml` (beside the folders, or in `labels/`); a `classes.txt` fixes KITTI's and VOC's too.
The format is read from the files unless `box_format` names one (datasets.ingest.box_labels).

Each box is moved with its image's pixels by the resize mode (scaled, then centre-cropped or padded,
as datasets.ingest.images does it), clipped to the image; one left with no area is dropped and
counted. An image without a label file, or with no boxes, is kept: it teaches the background.
Any problem is an IngestError naming the file, and no arrays are left behind.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from datasets.ingest import IngestError
from datasets.ingest.archive import IMAGE_EXTENSIONS, ZipSource
from datasets.ingest.box_labels import (
    BOX_FORMATS,
    COCO_BYTES,
    DONT_CARE,
    CocoLabels,
    ImageLabels,
    as_rows,
    class_index,
    parse_coco,
    parse_kitti,
    parse_voc,
    parse_yolo,
    read_names,
    read_text,
    txt_format,
)
from datasets.ingest.images import ImageRejected, ImageSpec, _load_image, resize_image, scaled_size, to_chw
from datasets.ingest.pipeline import SPLITS, IngestOptions, IngestResult, Opener, Progress, _visible, _walk
from datasets.ingest.segmentation import split_indices
from datasets.ingest.store import STAGING, write_detection_outputs

LABEL_SUFFIXES = frozenset({".txt", ".xml", ".json", ".yaml", ".yml"})  # what a tar's extraction keeps
NAME_FILES = ("classes.txt", "data.yaml", "data.yml")
COCO_FILE = "annotations.json"
_CHUNK = 32
_LAYOUT_HELP = ("a detection archive holds images/ with labels/ (a label file per image, matching its stem) or "
                "with one annotations.json (COCO), or train/, val/ and test/ each holding those")


@dataclass(frozen=True)
class Sample:
    image: str  # names as the source's opener takes them
    label: str | None  # its label file; None without one (or with COCO, whose file is the split's)
    split: str | None  # the split folder it came from; None when the seeded split decides


@dataclass(frozen=True)
class Layout:
    samples: list[Sample]
    coco: dict[str, dict[str, str]]  # annotations.json name -> {file_name as written: image name}
    name_files: list[str]  # classes.txt / data.yaml found, the nearest first


# --- scanning -------------------------------------------------------------------------------

def scan_layout(names: list[str], dirs: list[str] = (), box_format: str = "") -> Layout:  # type: ignore[assignment]
    files = sorted(p for p in (tuple(n.split("/")) for n in names) if _visible(p))
    folders = {p for p in (tuple(d.strip("/").split("/")) for d in dirs if d.strip("/")) if _visible(p)}
    folders |= {f[:i] for f in files for i in range(1, len(f))}
    root = _find_root(folders)
    children = _children(folders, root)
    split_folders = [s for s in SPLITS if s in children]
    if split_folders:
        if "train" not in split_folders:
            raise IngestError(f"There is no train/ folder beside {', '.join(s + '/' for s in split_folders)}; "
                              f"{_LAYOUT_HELP}.")
        bases = [(root + (s,), s) for s in split_folders]
    elif "images" in children:
        bases = [(root, None)]
    else:
        raise IngestError(f"No images/ folder was found: {_LAYOUT_HELP}.")
    layout = Layout([], {}, [])
    for base, split in bases:
        _scan_base(files, folders, base, split, box_format, layout)
    places = [root, root + ("labels",)] + [b + extra for b, _ in bases for extra in ((), ("labels",))]
    layout.name_files.extend(dict.fromkeys("/".join(p + (n,)) for n in NAME_FILES for p in places
                                           if p + (n,) in set(files)))
    return layout


def _children(folders: set[tuple[str, ...]], root: tuple[str, ...]) -> set[str]:
    return {d[len(root)] for d in folders if len(d) > len(root) and d[: len(root)] == root}


def _find_root(folders: set[tuple[str, ...]]) -> tuple[str, ...]:
    """Descend through single wrapping folders down to the level holding images/ or the splits."""
    root: tuple[str, ...] = ()
    while True:
        children = _children(folders, root)
        if children & ({"images", "labels"} | set(SPLITS)) or len(children) != 1:
            return root
        root = root + (children.pop(),)


def _stems(files: list[tuple[str, ...]], prefix: tuple[str, ...], suffixes: frozenset[str]) -> dict[str, str]:
    """{path under `prefix` without its suffix: full name} for the files under `prefix` with these suffixes."""
    found: dict[str, str] = {}
    for f in files:
        if f[: len(prefix)] != prefix or len(f) == len(prefix) or PurePosixPath(f[-1]).suffix.lower() not in suffixes:
            continue
        if len(f) == len(prefix) + 1 and f[-1] in NAME_FILES:
            continue  # labels/classes.txt names the classes (labelImg writes it there)
        stem = "/".join(f[len(prefix) : -1] + (PurePosixPath(f[-1]).stem,))
        if stem in found:
            raise IngestError(f"'{found[stem]}' and '{'/'.join(f)}' share a file stem; each stem must be one file.")
        found[stem] = "/".join(f)
    return found


def _scan_base(files: list[tuple[str, ...]], folders: set[tuple[str, ...]], base: tuple[str, ...],
               split: str | None, box_format: str, layout: Layout) -> None:
    where = "".join(part + "/" for part in base)
    images = _stems(files, base + ("images",), IMAGE_EXTENSIONS)
    if not images:
        raise IngestError(f"No images were found in {where}images/; {_LAYOUT_HELP}.")
    coco = base + (COCO_FILE,) in set(files)
    has_labels = base + ("labels",) in folders
    if coco and has_labels and not box_format:
        raise IngestError(f"The {where or 'top '}folder holds both labels/ and {COCO_FILE}; set box_format to say "
                          "which to read.")
    if coco and box_format in ("", "coco"):
        by_name = {"/".join(PurePosixPath(n).parts[len(base) + 1 :]): n for n in images.values()}
        layout.coco[where + COCO_FILE] = by_name
        layout.samples.extend(Sample(images[stem], None, split) for stem in sorted(images))
        return
    if not has_labels:
        expected = COCO_FILE if box_format == "coco" else "labels/"
        raise IngestError(f"There is no {expected} beside {where}images/; {_LAYOUT_HELP}.")
    labels = _stems(files, base + ("labels",), frozenset({".txt", ".xml"}))
    for stem in sorted(labels.keys() - images.keys()):
        raise IngestError(f"The label file '{labels[stem]}' has no image: expected {where}images/{stem} "
                          "with any image extension.")
    layout.samples.extend(Sample(images[stem], labels.get(stem), split) for stem in sorted(images))


# --- labels ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Labelled:
    """Every image's boxes in its own pixels (or normalised), the classes, and where each came from."""

    box_format: str
    classes: list[str]
    rows: list[np.ndarray]  # per sample: (M, 6) float64 [class, x1, y1, x2, y2, flag]
    normalised: list[bool]
    sources: list[str]  # per sample: the file its boxes are written in
    places: list[list[str]]  # per sample, per box: "line 3", "object 2", "annotations[7]"


def read_labels(layout: Layout, opener: Opener, box_format: str) -> Labelled:
    box_format = box_format or _detect_format(layout, opener)
    names = read_names(opener, layout.name_files[0]) if layout.name_files else None
    if box_format == "coco":
        return _coco_labels(layout, opener, names)
    if layout.coco:
        raise IngestError(f"The labels mix COCO ('{next(iter(layout.coco))}') and label files; use one format.")
    if box_format == "yolo" and names is None:
        raise IngestError("YOLO labels need the class names: add classes.txt (line i: the name of class i) or "
                          "data.yaml (names: [...]) beside images/ and labels/.")
    parsed = [_parse_file(sample.label, opener, box_format, names) if sample.label else ImageLabels()
              for sample in layout.samples]
    classes = names if names is not None else sorted({n for p in parsed for n in p.names} - {DONT_CARE})
    index = class_index(classes)
    return Labelled(box_format, classes,
                    [as_rows(p, index, s.label or s.image) for p, s in zip(parsed, layout.samples)],
                    [p.normalised for p in parsed], [s.label or s.image for s in layout.samples],
                    [p.places for p in parsed])


def _detect_format(layout: Layout, opener: Opener) -> str:
    if layout.coco:
        return "coco"
    labels = [s.label for s in layout.samples if s.label]
    xml = [name for name in labels if name.lower().endswith(".xml")]
    if xml and len(xml) != len(labels):
        txt = next(name for name in labels if not name.lower().endswith(".xml"))
        raise IngestError(f"The labels mix Pascal VOC XML ('{xml[0]}') and text ('{txt}'); use one format.")
    if xml:
        return "voc"
    for name in labels:
        found = txt_format(read_text(opener, name), name)
        if found:
            return found
    raise IngestError("No boxes were found: every label file is empty.")


def _parse_file(name: str, opener: Opener, box_format: str, names: list[str] | None) -> ImageLabels:
    is_xml = name.lower().endswith(".xml")
    if is_xml != (box_format == "voc"):
        raise IngestError(f"The label file '{name}' is {'XML' if is_xml else 'text'}, but the labels are read as "
                          f"{box_format.upper() if box_format != 'voc' else 'Pascal VOC'} "
                          f"({'.xml' if box_format == 'voc' else '.txt'} files).")
    text = read_text(opener, name)
    if box_format == "voc":
        return parse_voc(text, name)
    if box_format == "yolo":
        return parse_yolo(text, name, names or [])
    return parse_kitti(text, name)


def _coco_labels(layout: Layout, opener: Opener, names: list[str] | None) -> Labelled:
    if not layout.coco:
        raise IngestError(f"box_format is coco, but there is no {COCO_FILE} beside images/.")
    if labelled := next((s.label for s in layout.samples if s.label), None):
        raise IngestError(f"The labels mix COCO ('{next(iter(layout.coco))}') and label files ('{labelled}'); "
                          "use one format.")
    parsed: dict[str, CocoLabels] = {}
    for json_name, by_name in layout.coco.items():
        coco = parse_coco(read_text(opener, json_name, COCO_BYTES), json_name)
        for file_name in coco.images:
            if _coco_image(file_name, by_name) is None:
                raise IngestError(f"'{json_name}' labels the image '{file_name}', which is not in "
                                  f"{json_name[: -len(COCO_FILE)]}images/.")
        parsed[json_name] = coco
    categories: dict[int, str] = {}
    for json_name, coco in parsed.items():
        for key, value in coco.categories.items():
            if categories.setdefault(key, value) != value:
                raise IngestError(f"'{json_name}' names the category id {key} '{value}'; another annotations.json "
                                  f"names it '{categories[key]}'.")
    classes = names if names is not None else [categories[k] for k in sorted(categories)]
    index = class_index(classes)
    found = {image: (json_name, labels) for json_name, coco in parsed.items()
             for file_name, labels in coco.images.items()
             for image in [_coco_image(file_name, layout.coco[json_name])]}
    rows, places, sources = [], [], []
    for sample in layout.samples:
        json_name, labels = found.get(sample.image, ("", ImageLabels()))
        rows.append(as_rows(labels, index, json_name))
        places.append(labels.places)
        sources.append(json_name or sample.image)
    return Labelled("coco", classes, rows, [False] * len(rows), sources, places)


def _coco_image(file_name: str, by_name: dict[str, str]) -> str | None:
    """The image a COCO file_name means: its path under images/ (a leading images/ allowed)."""
    path = PurePosixPath(file_name.replace("\\", "/"))
    under = "/".join(path.parts[1:]) if path.parts[:1] == ("images",) else path.as_posix()
    return by_name.get(under) or by_name.get(path.as_posix())


# --- boxes with their image -----------------------------------------------------------------

def box_geometry(own: tuple[int, int], loaded: tuple[int, int], spec: ImageSpec) -> tuple[float, float, float, float]:
    """(scale x, scale y, shift x, shift y) taking a point of the image's own pixels (`own`: width, height,
    as a viewer shows it) to the stored image's, exactly as resize_image moves the pixels: a resize of the
    `loaded` image (JPEG draft mode may have shrunk it) to scaled_size, a centre crop, a centre fill."""
    scaled_w, scaled_h = scaled_size(loaded[0], loaded[1], spec)
    shift_x = (spec.width - min(scaled_w, spec.width)) // 2 - max(0, (scaled_w - spec.width) // 2)
    shift_y = (spec.height - min(scaled_h, spec.height)) // 2 - max(0, (scaled_h - spec.height) // 2)
    return scaled_w / own[0], scaled_h / own[1], float(shift_x), float(shift_y)


def place_boxes(rows: np.ndarray, own: tuple[int, int], loaded: tuple[int, int], spec: ImageSpec,
                normalised: bool) -> tuple[np.ndarray, int]:
    """The rows in the stored image's pixels, clipped; (kept rows float32, class boxes dropped)."""
    boxes = rows.copy()
    if normalised:
        boxes[:, 1:5] *= [own[0], own[1], own[0], own[1]]
    sx, sy, dx, dy = box_geometry(own, loaded, spec)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]] * sx + dx, 0, spec.width)
    boxes[:, [2, 4]] = np.clip(boxes[:, [2, 4]] * sy + dy, 0, spec.height)
    stored = boxes.astype(np.float32)
    keep = (stored[:, 3] > stored[:, 1]) & (stored[:, 4] > stored[:, 2])
    return stored[keep], int(((~keep) & (stored[:, 0] >= 0)).sum())


def check_inside(rows: np.ndarray, own: tuple[int, int], normalised: bool, source: str, places: list[str],
                 image: str) -> None:
    """A box lying beyond its image's edge by more than its own width or height is a mistake in the labels
    (a wrong image size, swapped columns), not a box to clip."""
    boxes = rows[:, 1:5] * ([own[0], own[1], own[0], own[1]] if normalised else 1)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    outside = (w > 0) & (h > 0) & ((boxes[:, 0] < -w) | (boxes[:, 1] < -h) | (boxes[:, 2] > own[0] + w)
                                  | (boxes[:, 3] > own[1] + h))
    for row in np.flatnonzero(outside):
        x1, y1, x2, y2 = (f"{v:g}" for v in boxes[row])
        raise IngestError(f"The box ({x1}, {y1}, {x2}, {y2}) at {places[row]} of '{source}' lies outside its image "
                          f"'{image}' ({own[0]}x{own[1]} pixels) by more than its own size.")


# --- decode ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Decoding:
    samples: list[Sample]
    labelled: Labelled
    opener: Opener
    spec: ImageSpec
    seed: int


def _decode_one(job: _Decoding, index: int, images: np.ndarray) -> tuple[np.ndarray, int]:
    sample, labelled = job.samples[index], job.labelled
    try:
        img, own = _load_image(job.opener(sample.image), job.spec)
    except ImageRejected as exc:
        raise IngestError(f"The image '{sample.image}' could not be used: {exc}") from None
    rows, normalised = labelled.rows[index], labelled.normalised[index]
    check_inside(rows, own, normalised, labelled.sources[index], labelled.places[index], sample.image)
    images[index] = to_chw(resize_image(img, job.spec, np.random.default_rng([job.seed, index])))
    return place_boxes(rows, own, img.size, job.spec, normalised)


def _decode_chunk(job: _Decoding, start: int, images: np.ndarray) -> list[tuple[np.ndarray, int]]:
    return [_decode_one(job, i, images) for i in range(start, min(start + _CHUNK, len(job.samples)))]


def decode_samples(job: _Decoding, out_dir: Path, *, workers: int, progress: Progress) -> tuple[list[np.ndarray], int]:
    """Every image into a staging array; (each image's stored boxes, class boxes dropped)."""
    spec, n = job.spec, len(job.samples)
    images = np.lib.format.open_memmap(out_dir / STAGING, mode="w+", dtype=np.uint8,
                                       shape=(n, spec.channels, spec.height, spec.width))
    results: list[tuple[np.ndarray, int]] = []
    pool = ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="ingest")
    try:
        futures = [pool.submit(_decode_chunk, job, start, images) for start in range(0, n, _CHUNK)]
        for done, future in enumerate(futures, 1):
            results += future.result()  # the first failing image, in file order, is the one reported
            progress(done / len(futures))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        images.flush()
        del images
    return [boxes for boxes, _ in results], sum(dropped for _, dropped in results)


def pad_boxes(per_image: list[np.ndarray]) -> np.ndarray:
    """(N, K, 6) float32, K the most boxes any image has (at least 1); padding rows class -1, all else 0."""
    k = max([1] + [len(b) for b in per_image])
    out = np.zeros((len(per_image), k, 6), dtype=np.float32)
    out[:, :, 0] = -1
    for i, boxes in enumerate(per_image):
        out[i, : len(boxes)] = boxes
    return out


# --- colours --------------------------------------------------------------------------------

# Tableau's ten: distinct on photographs, none of them black or white.
BOX_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
               (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def box_colours(classes: list[str]) -> dict[str, list[int]]:
    return {name: list(BOX_COLOURS[i % len(BOX_COLOURS)]) for i, name in enumerate(classes)}


# --- the whole ingest -----------------------------------------------------------------------

def run_detection_ingest(source: Path | ZipSource, out_dir: Path, options: IngestOptions, *, max_pixels: int,
                         workers: int, progress: Progress = lambda f: None) -> IngestResult:
    """Decode `source` (a folder, or a checked zip read in place) into aligned image and box arrays."""
    if options.box_format not in ("", *BOX_FORMATS):
        raise IngestError(f"'{options.box_format}' is not a box format; use one of {', '.join(BOX_FORMATS)}.")
    if isinstance(source, Path):
        names, dirs = _walk(source)
        opener: Opener = lambda name: source / name  # noqa: E731
    else:
        names, dirs, opener = source.names, source.dirs, source.open
    layout = scan_layout(names, dirs, options.box_format)
    labelled = read_labels(layout, opener, options.box_format)
    if not any((rows[:, 0] >= 0).any() for rows in labelled.rows):
        raise IngestError("No boxes were found in the whole dataset: a detection dataset needs boxes to learn from.")
    spec = ImageSpec(options.width, options.height, options.channels, options.resize_mode, max_pixels)
    job = _Decoding(layout.samples, labelled, opener, spec, options.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        stored, dropped = decode_samples(job, out_dir, workers=workers, progress=lambda f: progress(0.9 * f))
        if not any((b[:, 0] >= 0).any() for b in stored):
            raise IngestError(f"Every box was dropped: none keeps any area in the {options.width}x{options.height} "
                              f"image after the {options.resize_mode} resize.")
        splits = split_indices(layout.samples, options)  # type: ignore[arg-type]
        if len(splits["train"]) == 0:
            raise IngestError("No images are left for training; lower the validation and test percentages.")
        colours = box_colours(labelled.classes)
        figures = write_detection_outputs(out_dir, out_dir / STAGING, pad_boxes(stored), splits, labelled.classes,
                                          colours)
    finally:
        (out_dir / STAGING).unlink(missing_ok=True)
    progress(1.0)
    notes = [] if layout.samples[0].split is None or len(splits["val"]) else [
        "There is no val/ folder: the dataset has no validation images."]
    return IngestResult(labelled.classes, {s: int(len(v)) for s, v in splits.items()}, figures.images_with, {}, notes,
                        colormap=colours, box_format=labelled.box_format, box_counts=figures.box_counts,
                        boxes_dropped=dropped, images_without_boxes=figures.images_without_boxes)
