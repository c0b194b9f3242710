"""Detection metrics from the backend's decoded boxes: mAP by pycocotools' COCOeval (a kept evaluator,
not a hand-written one), the rest read from what it matched.

Boxes on both sides are in the network input's pixels (the stored images'): detections (N, D, 6) rows
[x1, y1, x2, y2, score, class] (padding: score 0, class -1), truth (N, K, 6) rows
[class, x1, y1, x2, y2, flag] (padding: class -1). What pycocotools is given:

- a true box of class >= 0 with flag 0: a ground-truth box of its class;
- flag 1 (VOC `difficult`, COCO `iscrowd`): a crowd box of its class, so a detection on it is
  neither a true nor a false positive (pycocotools' own rule for crowds: a detection overlapping a
  crowd by the IoU threshold, measured as the share of the detection inside it, is ignored);
- class -2 (KITTI `DontCare`): a crowd box of every class, so a detection of any class lying in it
  is ignored, and it is never a box to find.

Precision and recall "at the score threshold" count, at IoU 0.5, the detections scoring at least the
threshold that matched a box (true positives), those that matched nothing (false positives), and the
non-ignored true boxes (recall's denominator), from COCOeval's per-image matches.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

DONT_CARE = -2
PADDING = -1
DIFFICULT = 1
IOU_50 = 0  # the index of IoU 0.5 in COCOeval's thresholds (0.5, 0.55, ..., 0.95)
ALL_AREAS = 0  # the index of the "all" area range
LAST_MAX_DETS = -1  # the index of maxDets 100, what COCO's AP is read at


def coco_evaluation(detections: np.ndarray, truth: np.ndarray, num_classes: int) -> COCOeval:
    """COCOeval of `detections` (N, D, 6) against `truth` (N, K, 6), evaluated and accumulated
    (`stats` summarised too), printing nothing. Only COCO's "all" area range is evaluated: its
    per-image matching, pycocotools' slow part, runs once an image and class instead of four times
    (1,000 images of 100 detections, 3 classes: 14.5 s down to 2.7 s); the small, medium and large
    figures in `stats` are -1."""
    detections, truth = np.asarray(detections, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if detections.ndim != 3 or detections.shape[2] != 6 or truth.ndim != 3 or truth.shape[2] != 6:
        raise ValueError(f"Detections must be (N, D, 6) and truth (N, K, 6); got {detections.shape} and {truth.shape}.")
    if len(detections) != len(truth):
        raise ValueError(f"{len(detections)} images of detections against {len(truth)} of truth.")
    images = [{"id": i + 1} for i in range(len(truth))]
    categories = [{"id": c + 1} for c in range(num_classes)]  # ids from 1: COCOeval reads id 0 as "unmatched"
    ground = _coco({"images": images, "categories": categories, "annotations": _truth_annotations(truth, num_classes)})
    found = _coco({"images": images, "categories": categories,
                   "annotations": _detection_annotations(detections, num_classes)})
    evaluation = COCOeval(ground, found, iouType="bbox")
    evaluation.params.imgIds = [image["id"] for image in images]
    evaluation.params.catIds = [category["id"] for category in categories]
    evaluation.params.areaRng, evaluation.params.areaRngLbl = evaluation.params.areaRng[:1], ["all"]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def _coco(dataset: dict[str, Any]) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
    return coco


def _xywh(x1: float, y1: float, x2: float, y2: float) -> list[float]:
    return [x1, y1, max(0.0, x2 - x1), max(0.0, y2 - y1)]


def _truth_annotations(truth: np.ndarray, num_classes: int) -> list[dict[str, Any]]:
    annotations: list[dict[str, Any]] = []
    for i, boxes in enumerate(truth):
        for cls, x1, y1, x2, y2, flag in boxes:
            if cls == PADDING:
                continue
            if cls == DONT_CARE:
                classes, crowd = range(num_classes), 1
            elif 0 <= cls < num_classes:
                classes, crowd = [int(cls)], int(flag == DIFFICULT)
            else:
                raise ValueError(f"A true box of image {i} has class {cls:g}, outside the {num_classes} classes.")
            box = _xywh(x1, y1, x2, y2)
            annotations += [{"image_id": i + 1, "category_id": c + 1, "bbox": box, "area": box[2] * box[3],
                             "iscrowd": crowd} for c in classes]
    for number, annotation in enumerate(annotations, start=1):
        annotation["id"] = number
    return annotations


def _detection_annotations(detections: np.ndarray, num_classes: int) -> list[dict[str, Any]]:
    annotations: list[dict[str, Any]] = []
    for i, rows in enumerate(detections):
        for x1, y1, x2, y2, score, cls in rows:
            if score <= 0 or cls < 0:
                continue
            if cls >= num_classes:
                raise ValueError(f"A detection of image {i} has class {cls:g}, outside the {num_classes} classes.")
            box = _xywh(x1, y1, x2, y2)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(cls) + 1,
                                "bbox": box, "area": box[2] * box[3], "score": float(score)})
    return annotations


def map_figures(evaluation: COCOeval) -> dict[str, float]:
    """{"map_50", "map"}: mAP at IoU 0.5 and over 0.5:0.95 (COCO's AP), 0.0 with no ground truth."""
    return {"map_50": max(0.0, float(evaluation.stats[1])), "map": max(0.0, float(evaluation.stats[0]))}


def class_ap(evaluation: COCOeval) -> list[dict[str, float | None]]:
    """Each class's {"ap_50", "ap"}, in class order; None for a class with no true box."""
    precision = evaluation.eval["precision"][:, :, :, ALL_AREAS, LAST_MAX_DETS]  # (T, R, K)
    rows: list[dict[str, float | None]] = []
    for k in range(precision.shape[2]):
        at_50, every = precision[IOU_50, :, k], precision[:, :, k]
        rows.append({"ap_50": float(at_50[at_50 > -1].mean()) if (at_50 > -1).any() else None,
                     "ap": float(every[every > -1].mean()) if (every > -1).any() else None})
    return rows


def pr_curves(evaluation: COCOeval, classes: list[str]) -> dict[str, dict[str, list[float]]]:
    """At IoU 0.5, each class's interpolated precision at pycocotools' 101 recall points
    (0, 0.01, ..., 1); classes with no true box left out."""
    recall = [round(float(r), 2) for r in evaluation.params.recThrs]
    precision = evaluation.eval["precision"][IOU_50, :, :, ALL_AREAS, LAST_MAX_DETS]  # (R, K)
    return {name: {"recall": recall, "precision": [float(p) for p in precision[:, k]]}
            for k, name in enumerate(classes) if (precision[:, k] > -1).any()}


@dataclass(frozen=True)
class Matches:
    """What COCOeval matched at IoU 0.5, over the "all" area range and up to 100 detections an image:
    each detection it kept (`image`, `cls`, `score`, `true`: it matched a box, `ignored`: it matched
    an ignored box or region) and each image's non-ignored true boxes per class (`boxes`)."""

    image: np.ndarray
    cls: np.ndarray
    score: np.ndarray
    true: np.ndarray
    ignored: np.ndarray
    boxes: np.ndarray  # (images, classes)


def matches(evaluation: COCOeval, num_images: int, num_classes: int) -> Matches:
    columns: dict[str, list[np.ndarray]] = {"image": [], "cls": [], "score": [], "true": [], "ignored": []}
    boxes = np.zeros((num_images, num_classes), dtype=np.int64)
    every_area = evaluation.params.areaRng[ALL_AREAS]
    for found in evaluation.evalImgs:
        if found is None or found["aRng"] != every_area:
            continue
        i, k, n = found["image_id"] - 1, found["category_id"] - 1, len(found["dtScores"])
        boxes[i, k] = int((~np.asarray(found["gtIgnore"], dtype=bool)).sum())
        columns["image"].append(np.full(n, i))
        columns["cls"].append(np.full(n, k))
        columns["score"].append(np.asarray(found["dtScores"], dtype=np.float64))
        columns["true"].append(np.asarray(found["dtMatches"][IOU_50]).reshape(-1) > 0)
        columns["ignored"].append(np.asarray(found["dtIgnore"][IOU_50], dtype=bool).reshape(-1))
    kinds = {"image": np.int64, "cls": np.int64, "score": np.float64, "true": bool, "ignored": bool}
    return Matches(**{name: np.concatenate(parts) if parts else np.zeros(0, kinds[name])
                      for name, parts in columns.items()}, boxes=boxes)


def threshold_counts(found: Matches, score_threshold: float) -> np.ndarray:
    """(images, classes, 3) counts at IoU 0.5 of the detections scoring >= `score_threshold`:
    [true positives, false positives, true boxes to find]. Ignored boxes and the detections
    matched to them count nowhere."""
    images, classes = found.boxes.shape
    kept = (found.score >= score_threshold) & ~found.ignored
    cell = found.image * classes + found.cls
    tp = np.bincount(cell[kept & found.true], minlength=images * classes).reshape(images, classes)
    fp = np.bincount(cell[kept & ~found.true], minlength=images * classes).reshape(images, classes)
    return np.stack([tp, fp, found.boxes], axis=-1)
