"""Reading detection labels: KITTI and YOLO `.txt`, Pascal VOC `.xml`, COCO `annotations.json`, and the
class names beside them (`classes.txt`, `data.yaml`). Only text is read here; the images, and so the
boxes' place in them, are datasets.ingest.detection's.

Every problem is an IngestError naming the file (and the line, object or annotation) it is in.
"""
from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datasets.ingest import IngestError
from datasets.ingest.pipeline import Opener

BOX_FORMATS = ("kitti", "yolo", "voc", "coco")
DONT_CARE = "DontCare"  # KITTI's type for a region where detections are ignored: class -2, not a class
LABEL_BYTES = 1024 * 1024
COCO_BYTES = 256 * 1024 * 1024
_KITTI_COLUMNS = (15, 16)  # DIGITS' 15; a 16th is a detector's score, as KITTI's results carry


@dataclass
class ImageLabels:
    """One image's boxes as its label file gives them, before the image is opened."""

    names: list[str] = field(default_factory=list)  # class names; DONT_CARE for KITTI's DontCare
    coords: list[tuple[float, float, float, float]] = field(default_factory=list)  # x1, y1, x2, y2
    flags: list[int] = field(default_factory=list)  # 1: difficult (VOC) or crowd (COCO)
    places: list[str] = field(default_factory=list)  # "line 3", "object 2": where each box is written
    normalised: bool = False  # YOLO: coordinates are fractions of the image's width and height

    def add(self, name: str, box: tuple[float, float, float, float], place: str, flag: int = 0) -> None:
        self.names.append(name)
        self.coords.append(box)
        self.flags.append(flag)
        self.places.append(place)


# --- text -----------------------------------------------------------------------------------

def read_text(opener: Opener, name: str, limit: int = LABEL_BYTES) -> str:
    opened = opener(name)
    data = opened.read_bytes() if isinstance(opened, Path) else opened.read(limit + 1)
    if len(data) > limit:
        raise IngestError(f"'{name}' is larger than {limit // 1024**2} MiB, too large for a label file.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise IngestError(f"'{name}' is not UTF-8 text.") from None


def _numbers(parts: list[str], name: str, number: int, line: str) -> list[float]:
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = [math.nan]
    if not all(math.isfinite(v) for v in values):
        raise IngestError(f"Line {number} of '{name}' has a value that is not a number: '{line[:80]}'.")
    return values


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


# --- KITTI and YOLO -------------------------------------------------------------------------

def txt_format(text: str, name: str) -> str | None:
    """"kitti" or "yolo" from the first line of a `.txt` label that says; None for an empty file."""
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) == 5 and all(_is_number(p) for p in parts):
            return "yolo"
        if len(parts) in _KITTI_COLUMNS and not _is_number(parts[0]):
            return "kitti"
        raise IngestError(f"Line {number} of '{name}' is neither KITTI (15 columns: type truncated occluded alpha "
                          f"x1 y1 x2 y2 h w l x y z rotation_y) nor YOLO (5 columns: class cx cy w h): '{line[:80]}'.")
    return None


def parse_kitti(text: str, name: str) -> ImageLabels:
    labels = ImageLabels()
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in _KITTI_COLUMNS:
            raise IngestError(f"Line {number} of '{name}' has {len(parts)} columns; a KITTI label line has 15 "
                              f"(type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y): '{line[:80]}'.")
        x1, y1, x2, y2 = _numbers(parts[4:8], name, number, line)
        _numbers(parts[1:], name, number, line)
        labels.add(DONT_CARE if parts[0] == DONT_CARE else parts[0], (x1, y1, x2, y2), f"line {number}")
    return labels


def parse_yolo(text: str, name: str, classes: list[str]) -> ImageLabels:
    labels = ImageLabels(normalised=True)
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise IngestError(f"Line {number} of '{name}' has {len(parts)} columns; a YOLO label line has 5 "
                              f"(class cx cy w h, normalised to 0..1): '{line[:80]}'.")
        index, cx, cy, w, h = _numbers(parts, name, number, line)
        if index != int(index) or not 0 <= index < len(classes):
            raise IngestError(f"Line {number} of '{name}' has the class id {parts[0]}, which is not a class: "
                              f"the names list {len(classes)} (ids 0..{len(classes) - 1}).")
        labels.add(classes[int(index)], (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), f"line {number}")
    return labels


# --- Pascal VOC -----------------------------------------------------------------------------

def parse_voc(text: str, name: str) -> ImageLabels:
    """VOC's pixel indices are 1-based and inclusive: xmin 1 .. xmax 10 covers [0, 10) continuous,
    as Detectron2 reads them."""
    try:
        root = ElementTree.fromstring(text)  # expat refuses entity expansion bombs; no external entities
    except ElementTree.ParseError as exc:
        raise IngestError(f"'{name}' is not well-formed XML ({exc}).") from None
    if root.tag != "annotation":
        raise IngestError(f"'{name}' is not a Pascal VOC annotation: its root element is <{root.tag}>, "
                          "not <annotation>.")
    labels = ImageLabels()
    for number, obj in enumerate(root.iter("object"), 1):
        label = (obj.findtext("name") or "").strip()
        if not label:
            raise IngestError(f"Object {number} of '{name}' has no <name>.")
        box = obj.find("bndbox")
        values = [box.findtext(key) if box is not None else None for key in ("xmin", "ymin", "xmax", "ymax")]
        if any(v is None or not _is_number(v) for v in values):
            raise IngestError(f"Object {number} ('{label}') of '{name}' has no <bndbox> with numeric xmin, ymin, "
                              "xmax and ymax.")
        x1, y1, x2, y2 = (float(v) for v in values)  # type: ignore[arg-type]
        difficult = (obj.findtext("difficult") or "0").strip()
        labels.add(label, (x1 - 1, y1 - 1, x2, y2), f"object {number}", int(difficult not in ("0", "", "false")))
    return labels


# --- COCO -----------------------------------------------------------------------------------

@dataclass
class CocoLabels:
    categories: dict[int, str]  # category id -> name
    images: dict[str, ImageLabels]  # file_name (as written) -> its boxes


def parse_coco(text: str, name: str) -> CocoLabels:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IngestError(f"'{name}' is not valid JSON ({exc}).") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations",
                                                                                      "categories")):
        raise IngestError(f"'{name}' is not a COCO annotation file: it needs lists of images, annotations and "
                          "categories.")
    categories = _coco_categories(data["categories"], name)
    files: dict[int, str] = {}
    for number, image in enumerate(data["images"]):
        if not isinstance(image, dict) or not isinstance(image.get("id"), int) \
                or not isinstance(image.get("file_name"), str):
            raise IngestError(f"images[{number}] of '{name}' needs an integer id and a file_name.")
        files[image["id"]] = image["file_name"]
    images = {file: ImageLabels() for file in files.values()}
    for number, ann in enumerate(data["annotations"]):
        image_id, category, box = _coco_annotation(ann, number, name)
        if image_id not in files:
            raise IngestError(f"annotations[{number}] of '{name}' is for the image id {image_id}, which images "
                              "does not list.")
        if category not in categories:
            raise IngestError(f"annotations[{number}] of '{name}' has the category id {category}, which "
                              "categories does not list.")
        x, y, w, h = box
        images[files[image_id]].add(categories[category], (x, y, x + w, y + h), f"annotations[{number}]",
                                    int(bool(ann.get("iscrowd", 0))))
    return CocoLabels(categories, images)


def _coco_categories(raw: list[object], name: str) -> dict[int, str]:
    categories: dict[int, str] = {}
    for number, category in enumerate(raw):
        if not isinstance(category, dict) or not isinstance(category.get("id"), int) \
                or not isinstance(category.get("name"), str) or not category["name"].strip():
            raise IngestError(f"categories[{number}] of '{name}' needs an integer id and a name.")
        categories[category["id"]] = category["name"].strip()
    if len(set(categories.values())) != len(categories):
        raise IngestError(f"Two categories of '{name}' share a name; every class needs its own.")
    return dict(sorted(categories.items()))


def _coco_annotation(ann: object, number: int, name: str) -> tuple[int, int, list[float]]:
    if not isinstance(ann, dict) or not isinstance(ann.get("image_id"), int) \
            or not isinstance(ann.get("category_id"), int):
        raise IngestError(f"annotations[{number}] of '{name}' needs an integer image_id and category_id.")
    box = ann.get("bbox")
    if not isinstance(box, list) or len(box) != 4 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box):
        raise IngestError(f"annotations[{number}] of '{name}' needs a bbox of four numbers [x, y, width, height].")
    return ann["image_id"], ann["category_id"], [float(v) for v in box]


# --- class names ----------------------------------------------------------------------------

def read_names(opener: Opener, name: str) -> list[str]:
    """The class names of `classes.txt` (line i: class i) or of `data.yaml`'s `names:` (a list, or a
    mapping of ids 0..n-1 to names)."""
    text = read_text(opener, name)
    names = _yaml_names(text, name) if name.endswith((".yaml", ".yml")) else _txt_names(text)
    if not names:
        raise IngestError(f"'{name}' names no classes.")
    if any(not n for n in names):
        raise IngestError(f"'{name}' has an empty class name; class i needs a name.")
    if len(set(names)) != len(names):
        raise IngestError(f"'{name}' names a class twice; every class needs its own name.")
    if DONT_CARE in names:
        raise IngestError(f"'{name}' names a class {DONT_CARE}, which KITTI keeps for regions of no class.")
    return names


def _txt_names(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _yaml_names(text: str, name: str) -> list[str]:
    import yaml  # PyYAML comes with drf-spectacular, a requirement of the API

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise IngestError(f"'{name}' is not valid YAML ({str(exc).splitlines()[0]}).") from None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, list):
        return [str(n).strip() for n in names]
    if isinstance(names, dict) and all(isinstance(k, int) for k in names):
        if sorted(names) != list(range(len(names))):
            raise IngestError(f"The names of '{name}' are numbered {sorted(names)}; ids run 0..n-1.")
        return [str(names[i]).strip() for i in range(len(names))]
    raise IngestError(f"'{name}' has no names: list (or mapping of class ids to names).")


def class_index(names: list[str]) -> dict[str, int]:
    return {n: i for i, n in enumerate(names)}


def as_rows(labels: ImageLabels, index: dict[str, int], name: str) -> np.ndarray:
    """(M, 6) float64 [class, x1, y1, x2, y2, flag]; DontCare is class -2; a name outside `index`
    (a class classes.txt does not list) is an error naming the file."""
    rows = np.zeros((len(labels.names), 6), dtype=np.float64)
    for row, (label, box, flag, place) in enumerate(zip(labels.names, labels.coords, labels.flags, labels.places)):
        if label == DONT_CARE:
            rows[row, 0] = -2
        elif label in index:
            rows[row, 0] = index[label]
        else:
            raise IngestError(f"The class '{label}' ({place} of '{name}') is not one of the classes named: "
                              f"{', '.join(index)}.")
        rows[row, 1:5] = box
        rows[row, 5] = flag
    return rows
