"""The evaluation of a split for detection: mAP@0.5 and mAP@0.5:0.95, each class's AP, precision and
recall at a score threshold, PR curves, and the images it did worst on (`metrics` says how)."""
from __future__ import annotations

from typing import Any

import numpy as np

from training.vision_tasks.detection import metrics

WORST = 12  # images the evaluation shows as the hardest


def evaluation_report(outputs: np.ndarray, truth: np.ndarray, classes: list[str],
                      score_threshold: float) -> dict[str, Any]:
    """`outputs` (N, D, 6) detections, `truth` (N, K, 6) true boxes, both in the stored images' pixels."""
    evaluation = metrics.coco_evaluation(outputs, truth, len(classes))
    found = metrics.matches(evaluation, len(truth), len(classes))
    counts = metrics.threshold_counts(found, score_threshold)
    tp, fp, boxes = counts.sum(axis=(0, 1))
    return {"task": "detection", "images": int(len(truth)), "classes": classes,
            **metrics.map_figures(evaluation), "score_threshold": float(score_threshold),
            "precision": _share(tp, tp + fp), "recall": _share(tp, boxes),
            "per_class": per_class(evaluation, counts.sum(axis=0), classes),
            "pr_curves": metrics.pr_curves(evaluation, classes),
            "thresholds": threshold_table(found, classes),
            "worst": worst_images(outputs, truth, counts.sum(axis=1), score_threshold)}


THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05, 0.1, ..., 0.95


def threshold_table(found: metrics.Matches, classes: list[str]) -> dict[str, Any]:
    """Precision and recall at IoU 0.5 at each of THRESHOLDS, per class and over all of them, for
    the page's threshold slider: {"thresholds", "precision": {class: [...], "all": [...]}, "recall": ...}."""
    names = [*classes, "all"]
    table: dict[str, Any] = {"thresholds": list(THRESHOLDS), "precision": {n: [] for n in names},
                             "recall": {n: [] for n in names}}
    for threshold in THRESHOLDS:
        counts = metrics.threshold_counts(found, threshold).sum(axis=0)  # (classes, 3)
        for name, (tp, fp, boxes) in zip(names, [*counts, counts.sum(axis=0)], strict=True):
            table["precision"][name].append(_share(tp, tp + fp))
            table["recall"][name].append(_share(tp, boxes))
    return table


def _share(part: int, whole: int) -> float:
    return float(part / whole) if whole else 0.0


def per_class(evaluation: Any, counts: np.ndarray, classes: list[str]) -> list[dict[str, Any]]:
    """`counts`: (classes, 3) [true positives, false positives, true boxes] at the threshold."""
    return [{"class": name, **ap, "precision": _share(tp, tp + fp), "recall": _share(tp, boxes), "boxes": int(boxes)}
            for name, ap, (tp, fp, boxes) in zip(classes, metrics.class_ap(evaluation), counts, strict=True)]


def image_f1(counts: np.ndarray) -> np.ndarray:
    """Each image's F1 from its (images, 3) counts; 1.0 for an image with nothing to find and nothing found."""
    tp, fp, boxes = counts.T.astype(np.float64)
    wrong = 2 * tp + fp + (boxes - tp)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(wrong > 0, 2 * tp / wrong, 1.0)


def worst_images(outputs: np.ndarray, truth: np.ndarray, counts: np.ndarray,
                 score_threshold: float, limit: int = WORST) -> list[dict[str, Any]]:
    """The `limit` images with the lowest F1 at the threshold (ties: the first), each with its true
    boxes [class, x1, y1, x2, y2] (DontCare regions as class -2) and the detections it kept
    [class, score, x1, y1, x2, y2], best first."""
    f1 = image_f1(counts)
    order = np.lexsort((np.arange(len(f1)), f1))[:limit]
    rows = []
    for i in order:
        true = [[float(v) for v in row[:5]] for row in truth[i] if row[0] != metrics.PADDING]
        found = outputs[i][(outputs[i][:, 4] > 0) & (outputs[i][:, 4] >= score_threshold) & (outputs[i][:, 5] >= 0)]
        found = found[np.argsort(-found[:, 4], kind="stable")]
        predicted = [[float(r[5]), float(r[4]), *map(float, r[:4])] for r in found]
        rows.append({"index": int(i), "f1": float(f1[i]), "true": true, "predicted": predicted})
    return rows
