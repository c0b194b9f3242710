"""Segmentation metrics from predicted per-pixel probabilities: pure numpy, so tests can check them.

Every figure comes from a confusion matrix of pixel counts (rows the true class, columns the
predicted one) that leaves out the pixels whose mask holds `ignore_index` (unlabelled):

- pixel accuracy: the labelled pixels predicted right, over all labelled pixels;
- a class's IoU: tp / (tp + fp + fn), its row and column sums less their overlap; a class in
  neither the truth nor the prediction has no IoU (None) and is left out of the mean;
- mean IoU: the mean of the IoUs that exist, from one matrix over the whole split (never a mean
  of per-batch or per-image means);
- precision tp / predicted (0 for a class never predicted), recall tp / true (0 for an absent one).
"""
from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image

WORST = 8  # images the evaluation lists as the hardest


def confusion(pred: np.ndarray, true: np.ndarray, classes: int, ignore_index: int = 255) -> np.ndarray:
    """The (classes, classes) pixel counts of `pred` against `true` (same shape, class indices)."""
    labelled = true != ignore_index
    t, p = true[labelled].astype(np.int64), pred[labelled].astype(np.int64)
    if t.size and (t.min() < 0 or t.max() >= classes or p.min() < 0 or p.max() >= classes):
        raise ValueError(f"A mask or prediction holds a value outside the {classes} classes and {ignore_index}.")
    return np.bincount(t * classes + p, minlength=classes * classes).reshape(classes, classes)


def pixel_accuracy(matrix: np.ndarray) -> float:
    total = matrix.sum()
    return float(np.trace(matrix) / total) if total else 0.0


def class_iou(matrix: np.ndarray) -> np.ndarray:
    """Each class's IoU; NaN for a class in neither the truth nor the prediction."""
    tp = np.diag(matrix).astype(np.float64)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(matrix: np.ndarray) -> float:
    iou = class_iou(matrix)
    present = ~np.isnan(iou)
    return float(iou[present].mean()) if present.any() else 0.0


def per_class(matrix: np.ndarray, classes: list[str]) -> list[dict[str, Any]]:
    iou = class_iou(matrix)
    rows = []
    for i, name in enumerate(classes):
        tp, predicted, actual = int(matrix[i, i]), int(matrix[:, i].sum()), int(matrix[i].sum())
        rows.append({"label": name, "iou": None if np.isnan(iou[i]) else float(iou[i]),
                     "precision": tp / predicted if predicted else 0.0,
                     "recall": tp / actual if actual else 0.0, "pixels": actual})
    return rows


def image_confusions(pred: np.ndarray, true: np.ndarray, classes: int, ignore_index: int = 255) -> np.ndarray:
    """One (classes, classes) matrix per image, (N, classes, classes), in one bincount."""
    n = len(true)
    image = np.broadcast_to(np.arange(n).reshape(n, *([1] * (true.ndim - 1))), true.shape)
    labelled = true != ignore_index
    flat = (image[labelled] * classes + true[labelled].astype(np.int64)) * classes + pred[labelled].astype(np.int64)
    return np.bincount(flat, minlength=n * classes * classes).reshape(n, classes, classes)


def worst_images(matrices: np.ndarray, limit: int = WORST) -> list[dict[str, Any]]:
    """The `limit` images with the lowest IoU of their own (images with no labelled pixel left out)."""
    scored = [(mean_iou(m), i) for i, m in enumerate(matrices) if m.sum()]
    scored.sort()
    return [{"index": i, "iou": iou} for iou, i in scored[:limit]]


def evaluation_report(outputs: np.ndarray, masks: np.ndarray, classes: list[str],
                      ignore_index: int = 255) -> dict[str, Any]:
    """`outputs`: (N, classes, H, W) probabilities; `masks`: (N, H, W) class indices."""
    pred = outputs.argmax(axis=1)
    matrices = image_confusions(pred, masks, len(classes), ignore_index)
    matrix = matrices.sum(axis=0)
    return {
        "task": "segmentation",
        "count": int(len(masks)),
        "classes": classes,
        "pixel_accuracy": pixel_accuracy(matrix),
        "mean_iou": mean_iou(matrix),
        "per_class": per_class(matrix, classes),
        "confusion": matrix.tolist(),
        "worst": worst_images(matrices),
    }


class SegmentationEvaluation:
    """`evaluation_report` a batch at a time, holding no probabilities: the split's confusion
    matrix, each image's IoU, and the predicted masks of the `WORST` images so far. Its report has
    the same figures as `evaluation_report` on the whole split, each worst image with its `mask`."""

    def __init__(self, classes: list[str], ignore_index: int = 255) -> None:
        self.classes, self.ignore_index = classes, ignore_index
        self.matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
        self.count = 0
        self.worst: list[tuple[float, int, np.ndarray]] = []  # (iou, index, predicted mask)

    def add(self, outputs: np.ndarray, masks: np.ndarray) -> None:
        """The next images of the split: `outputs` (n, classes, H, W) probabilities, `masks` (n, H, W)."""
        pred = outputs.argmax(axis=1)
        matrices = image_confusions(pred, np.asarray(masks), len(self.classes), self.ignore_index)
        self.matrix += matrices.sum(axis=0)
        scored = [(mean_iou(m), self.count + i, pred[i].astype(np.uint16)) for i, m in enumerate(matrices) if m.sum()]
        self.worst = sorted(self.worst + scored, key=lambda row: row[:2])[:WORST]
        self.count += len(matrices)

    def report(self) -> dict[str, Any]:
        return {
            "task": "segmentation",
            "count": self.count,
            "classes": self.classes,
            "pixel_accuracy": pixel_accuracy(self.matrix),
            "mean_iou": mean_iou(self.matrix),
            "per_class": per_class(self.matrix, self.classes),
            "confusion": self.matrix.tolist(),
            "worst": [{"index": i, "iou": iou, "mask": mask_png(mask)} for iou, i, mask in self.worst],
        }


# --- inference ---------------------------------------------------------------------------------

def infer_answer(outputs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """`outputs`: one image's (classes, H, W) probabilities. Its mask of class indices at the network's
    size (`answer_to_size` puts it at the image's own), and each class's share of its pixels."""
    mask = outputs.argmax(axis=0)
    counts = np.bincount(mask.ravel(), minlength=len(classes))
    return {"width": int(mask.shape[1]), "height": int(mask.shape[0]), "mask": mask_png(mask),
            "classes": classes, "class_pixels": {name: float(counts[i] / mask.size) for i, name in enumerate(classes)}}


def mask_png(mask: np.ndarray) -> str:
    """A (H, W) mask of class indices as a base64 PNG: 8-bit grey (L), 16-bit past 256 classes."""
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8 if mask.max(initial=0) < 256 else np.uint16)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def mask_from_png(data: str) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(base64.b64decode(data))))


def mask_to_size(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """A (H, W) mask resized to (height, width) with nearest neighbour: no class index is invented."""
    if mask.shape == (height, width):
        return mask
    return np.array(Image.fromarray(mask).resize((width, height), Image.Resampling.NEAREST))


def answer_to_size(answer: dict[str, Any], width: int, height: int) -> dict[str, Any]:
    """An `infer_answer` with its mask (and class shares) at the image's own size."""
    return _answer_with_mask(answer, mask_to_size(mask_from_png(answer["mask"]), width, height))


def answer_to_image(answer: dict[str, Any], width: int, height: int, scaled: tuple[int, int]) -> dict[str, Any]:
    """An `infer_answer` with its mask laid over the image it came from (`mask_to_image`)."""
    return _answer_with_mask(answer, mask_to_image(mask_from_png(answer["mask"]), width, height, scaled))


def mask_to_image(mask: np.ndarray, width: int, height: int, scaled: tuple[int, int]) -> np.ndarray:
    """A mask at the network's size put back over a `width` x `height` image that was scaled to
    `scaled` (width, height) and then centre-cropped or filled to the network's size
    (datasets.ingest.images: the resize modes): the crop or fill undone, then resized.
    Where the crop cut the image off, the classes at the nearest edge the network saw carry on."""
    mask = _unfit(_unfit(mask, 0, scaled[1]), 1, scaled[0])
    return mask_to_size(mask, width, height)


def _unfit(mask: np.ndarray, axis: int, scaled: int) -> np.ndarray:
    size = mask.shape[axis]
    if scaled >= size:  # centre-cropped: the network saw the middle `size` of `scaled`
        before = (scaled - size) // 2
        widths = [(0, 0), (0, 0)]
        widths[axis] = (before, scaled - size - before)
        return np.pad(mask, widths, mode="edge")
    start = (size - scaled) // 2  # filled: the image sat in the middle of noise
    return np.take(mask, np.arange(start, start + scaled), axis=axis)


def _answer_with_mask(answer: dict[str, Any], mask: np.ndarray) -> dict[str, Any]:
    height, width = mask.shape
    counts = np.bincount(mask.ravel().astype(np.int64), minlength=len(answer["classes"]))
    return {**answer, "width": width, "height": height, "mask": mask_png(mask),
            "class_pixels": {name: float(counts[i] / mask.size) for i, name in enumerate(answer["classes"])}}
