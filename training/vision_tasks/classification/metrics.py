"""Classification metrics from predicted probabilities: pure numpy, so tests can check them."""
from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted ones."""
    return np.bincount(labels * n_classes + predicted, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def topk_accuracy(probabilities: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, probabilities.shape[1])
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean()) if len(labels) else 0.0


def per_class(matrix: np.ndarray, classes: list[str]) -> list[dict[str, Any]]:
    rows = []
    for i, name in enumerate(classes):
        tp, predicted, actual = int(matrix[i, i]), int(matrix[:, i].sum()), int(matrix[i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"class": name, "precision": precision, "recall": recall, "f1": f1, "support": actual})
    return rows


def confident_mistakes(probabilities: np.ndarray, labels: np.ndarray, limit: int) -> list[dict[str, Any]]:
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][:limit]
    return [{"index": int(i), "true": int(labels[i]), "predicted": int(predicted[i]),
             "confidence": float(probabilities[i, predicted[i]])} for i in order]


def top_per_class(probabilities: np.ndarray, labels: np.ndarray, n: int) -> list[list[dict[str, Any]]]:
    """For each class, the n images the model scores highest for it (DIGITS' Top-N)."""
    result = []
    for c in range(probabilities.shape[1]):
        best = np.argsort(-probabilities[:, c], kind="stable")[:n]
        result.append([{"index": int(i), "true": int(labels[i]), "score": float(probabilities[i, c])} for i in best])
    return result


def evaluation_report(probabilities: np.ndarray, labels: np.ndarray, classes: list[str], *,
                      mistakes: int = 24, top_n: int = 8) -> dict[str, Any]:
    matrix = confusion_matrix(labels, probabilities.argmax(axis=1), len(classes))
    rows = per_class(matrix, classes)
    return {
        "count": int(len(labels)),
        "top1": topk_accuracy(probabilities, labels, 1),
        "top5": topk_accuracy(probabilities, labels, 5),
        "macro": {key: float(np.mean([r[key] for r in rows])) for key in ("precision", "recall", "f1")},
        "per_class": rows,
        "confusion": matrix.tolist(),
        "classes": classes,
        "mistakes": confident_mistakes(probabilities, labels, mistakes),
        "top_per_class": top_per_class(probabilities, labels, top_n),
    }
