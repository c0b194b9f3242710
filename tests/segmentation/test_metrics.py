"""Segmentation metrics against hand-computed examples: unlabelled pixels count nowhere, a class
absent from truth and prediction is left out of the mean IoU, a class never predicted scores 0."""
from __future__ import annotations

import numpy as np
import pytest

from training.vision_tasks.segmentation.metrics import (
    answer_to_size,
    confusion,
    evaluation_report,
    infer_answer,
    mask_from_png,
    mask_to_size,
    mean_iou,
    pixel_accuracy,
)

# 3 classes seen, a 4th ("d") in neither truth nor prediction; 255 is unlabelled.
TRUE = np.array([[0, 0, 1], [1, 255, 2]])
PRED = np.array([[0, 1, 1], [1, 0, 0]])
# rows true, columns predicted; the unlabelled pixel (predicted 0) counts nowhere
MATRIX = [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]


def one_hot(pred: np.ndarray, classes: int) -> np.ndarray:
    """Probabilities whose argmax is `pred`: (N, classes, H, W) from (N, H, W)."""
    return np.moveaxis(np.eye(classes)[pred], -1, 1) * 0.7 + 0.3 / classes


def test_the_confusion_counts_labelled_pixels_only():
    assert confusion(PRED, TRUE, 4).tolist() == MATRIX
    assert confusion(PRED, np.full_like(TRUE, 7), 4, ignore_index=7).sum() == 0


def test_it_refuses_a_mask_value_outside_the_classes():
    with pytest.raises(ValueError, match="outside the 3 classes"):
        confusion(PRED, np.array([[0, 0, 1], [1, 3, 2]]), 3)


def test_pixel_accuracy_and_mean_iou_by_hand():
    matrix = np.array(MATRIX)

    assert pixel_accuracy(matrix) == pytest.approx(3 / 5)
    # IoU a = 1 / (2 + 2 - 1), b = 2 / (2 + 3 - 2), c = 0 / (1 + 0 - 0); d is in neither: left out
    assert mean_iou(matrix) == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert pixel_accuracy(np.zeros((2, 2), int)) == 0.0 and mean_iou(np.zeros((2, 2), int)) == 0.0


def test_the_report_has_per_class_figures_the_confusion_and_the_worst_images():
    perfect = np.array([[0, 1, 1], [0, 1, 1]])
    true = np.stack([TRUE, perfect, np.full_like(TRUE, 255)])
    pred = np.stack([PRED, perfect, PRED])

    report = evaluation_report(one_hot(pred, 4), true, list("abcd"))

    assert report["task"] == "segmentation" and report["count"] == 3
    assert report["confusion"] == [[3, 1, 0, 0], [0, 6, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    assert report["pixel_accuracy"] == pytest.approx(9 / 11)
    a, b, c, d = report["per_class"]
    assert a == {"label": "a", "iou": pytest.approx(3 / 5), "precision": pytest.approx(3 / 4),
                 "recall": pytest.approx(3 / 4), "pixels": 4}
    assert b["iou"] == pytest.approx(6 / 7) and b["precision"] == pytest.approx(6 / 7) and b["recall"] == 1.0
    assert c == {"label": "c", "iou": 0.0, "precision": 0.0, "recall": 0.0, "pixels": 1}  # never predicted
    assert d["iou"] is None and d["pixels"] == 0  # in neither: no IoU
    assert report["mean_iou"] == pytest.approx((3 / 5 + 6 / 7 + 0) / 3)
    # the all-unlabelled image has no IoU of its own; the first is the worst
    assert report["worst"] == [{"index": 0, "iou": pytest.approx(1 / 3)}, {"index": 1, "iou": 1.0}]


def test_the_mean_iou_is_of_the_whole_split_not_a_mean_of_images():
    true = np.array([[[0, 0, 0, 1]], [[1, 1, 1, 1]]])
    pred = np.array([[[0, 0, 0, 0]], [[1, 1, 1, 1]]])

    report = evaluation_report(one_hot(pred, 2), true, ["a", "b"])

    # split: a 3 / 4, b 4 / 5; the images' own would be (3 / 4 + 0) / 2 and 1
    assert report["mean_iou"] == pytest.approx((3 / 4 + 4 / 5) / 2)
    assert [w["iou"] for w in report["worst"]] == [pytest.approx(3 / 8), 1.0]


def test_infer_answers_a_mask_of_class_indices_and_each_class_share():
    pred = np.array([[0, 2, 2, 2], [0, 0, 2, 2]])

    answer = infer_answer(one_hot(pred[None], 3)[0], ["sky", "road", "car"])

    assert (answer["width"], answer["height"]) == (4, 2)
    assert np.array_equal(mask_from_png(answer["mask"]), pred)
    assert answer["class_pixels"] == {"sky": 3 / 8, "road": 0.0, "car": 5 / 8}
    assert answer["classes"] == ["sky", "road", "car"]


def test_a_mask_is_resized_with_nearest_neighbour():
    mask = np.array([[0, 1], [2, 3]], dtype=np.uint8)

    assert mask_to_size(mask, 4, 2).tolist() == [[0, 0, 1, 1], [2, 2, 3, 3]]
    big = answer_to_size(infer_answer(one_hot(mask[None], 4)[0], list("abcd")), 6, 4)
    assert (big["width"], big["height"]) == (6, 4)
    assert set(np.unique(mask_from_png(big["mask"]))) == {0, 1, 2, 3}
    assert big["class_pixels"] == {c: 0.25 for c in "abcd"}
