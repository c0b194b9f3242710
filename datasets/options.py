"""Limits and cross-field rules for dataset options, shared by the HTML form and the API."""
from __future__ import annotations

from django.conf import settings

from datasets.ingest.images import RESIZE_MODES

MIN_SIDE = 8
MAX_SPLIT_PERCENT = 90
DEFAULT_IGNORE_INDEX = 255
TASK_LABELS = [("classification", "Classification (one folder per class)"),
               ("segmentation", "Segmentation (images/ and masks/)"),
               ("detection", "Object detection (images/ and labels/ or annotations.json)")]
DATASET_TASKS = tuple(task for task, _ in TASK_LABELS)
BOX_FORMAT_LABELS = [("", "Read from the files"), ("kitti", "KITTI (.txt, 15 columns)"),
                     ("yolo", "YOLO (.txt: class cx cy w h)"), ("voc", "Pascal VOC (.xml)"),
                     ("coco", "COCO (annotations.json)")]
RESIZE_MODE_LABELS = [("squash", "Squash"), ("crop", "Center crop"), ("fill", "Fill (pad with noise)"),
                      ("half_crop", "Half crop, half fill")]
assert [m for m, _ in RESIZE_MODE_LABELS] == list(RESIZE_MODES)


def max_side() -> int:
    return int(settings.WORKBENCH["MAX_IMAGE_SIDE"])


def split_problems(val_percent: int, test_percent: int) -> dict[str, str]:
    if val_percent + test_percent > MAX_SPLIT_PERCENT:
        return {"test_percent": f"Validation and test together may take at most {MAX_SPLIT_PERCENT}% of the images."}
    return {}


def per_class_problems(min_per_class: int, max_per_class: int | None) -> dict[str, str]:
    if max_per_class is not None and max_per_class < min_per_class:
        return {"max_per_class": "The maximum images per class must not be below the minimum."}
    return {}


def task_field_problems(task: str, *, ignore_index: bool, box_format: bool) -> dict[str, str]:
    """A field of one task given for a dataset of another."""
    problems = {}
    if ignore_index and task != "segmentation":
        problems["ignore_index"] = "ignore_index is for segmentation datasets only (task=segmentation)."
    if box_format and task != "detection":
        problems["box_format"] = "box_format is for detection datasets only (task=detection)."
    return problems


def source_problems(has_archive: bool, server_path: str) -> dict[str, str]:
    if has_archive and server_path:
        return {"server_path": "Give either an archive or a server folder, not both."}
    if not has_archive and not server_path:
        return {"archive": "Upload an archive (zip, tar, tar.gz) or name a server folder."}
    return {}
