"""Detection's evaluation report on hand-made outputs: mAP figures, each class's AP, precision and
recall at the score threshold, PR curves at IoU 0.5, and the worst images by F1 with their boxes."""
from __future__ import annotations

import pytest

from tests.detection.test_task_metrics import detections, truth
from training.vision_tasks import vision_task

CLASSES = ["cat", "dog", "bird"]
CAT, DOG = [0, 10, 10, 50, 50, 0], [1, 60, 20, 100, 80, 0]


@pytest.fixture
def report():  # type: ignore[no-untyped-def]
    true = truth([CAT, DOG],  # image 0: both found
                 [CAT, DOG],  # image 1: the cat found, the dog missed, a confident false dog
                 [],  # image 2: nothing there, a false cat scoring under the threshold
                 [CAT, [-2, 100, 100, 140, 140, 0]])  # image 3: the cat found, a dog in DontCare ignored
    found = detections([[10, 10, 50, 50, 0.9, 0], [60, 20, 100, 80, 0.8, 1]],
                       [[11, 10, 51, 50, 0.7, 0], [150, 150, 190, 190, 0.95, 1]],
                       [[0, 0, 20, 20, 0.2, 0]],
                       [[10, 10, 50, 50, 0.6, 0], [105, 105, 135, 135, 0.99, 1]])
    return vision_task("detection").evaluation_report(found, true, CLASSES, score_threshold=0.3)


def test_the_report_has_the_map_figures_and_the_threshold(report):
    assert report["task"] == "detection" and report["images"] == 4 and report["score_threshold"] == 0.3
    # cat: 3 of 3 found, its false positive (0.2) ranked last: AP 1. dog: ranked 0.95 false, 0.8 true,
    # with 2 true dogs: precision 1/2 up to recall 1/2, then nothing: 51 points of 101 at 1/2.
    assert report["map_50"] == pytest.approx((1.0 + 0.5 * 51 / 101) / 2)
    assert report["per_class"][0]["ap_50"] == pytest.approx(1.0)
    assert report["per_class"][1]["ap_50"] == pytest.approx(0.5 * 51 / 101)
    assert report["per_class"][2] == {"class": "bird", "ap_50": None, "ap": None, "precision": 0.0, "recall": 0.0,
                                      "boxes": 0}


def test_precision_and_recall_count_only_the_detections_at_the_threshold(report):
    cat, dog, _ = report["per_class"]
    # cat: 3 true positives at >= 0.3; the 0.2 false positive is under the threshold.
    assert (cat["precision"], cat["recall"], cat["boxes"]) == (1.0, 1.0, 3)
    # dog: one true (0.8), one false (0.95), the DontCare one (0.99) counts nowhere; 2 true dogs.
    assert (dog["precision"], dog["recall"], dog["boxes"]) == (0.5, 0.5, 2)
    assert (report["precision"], report["recall"]) == (pytest.approx(4 / 5), pytest.approx(4 / 5))


def test_the_pr_curves_are_at_iou_0_5_for_classes_with_true_boxes(report):
    assert list(report["pr_curves"]) == ["cat", "dog"]
    dog = report["pr_curves"]["dog"]
    assert len(dog["recall"]) == len(dog["precision"]) == 101
    assert dog["precision"][:51] == pytest.approx([0.5] * 51) and dog["precision"][51:] == [0.0] * 50


def test_the_worst_images_come_first_by_f1_with_their_boxes(report):
    worst = report["worst"]
    # image 1: 1 true positive, 1 false, 1 missed: F1 2/4. The others are perfect at the threshold
    # (image 2's false cat is under it; image 3's DontCare dog counts nowhere), in index order.
    assert [(w["index"], w["f1"]) for w in worst] == [(1, 0.5), (0, 1.0), (2, 1.0), (3, 1.0)]
    assert worst[0]["true"] == [[0, 10, 10, 50, 50], [1, 60, 20, 100, 80]]
    assert worst[0]["predicted"] == [[1, pytest.approx(0.95), 150, 150, 190, 190], [0, pytest.approx(0.7), 11, 10, 51, 50]]
    assert worst[3]["true"][1] == [-2, 100, 100, 140, 140]  # DontCare regions are shown
    assert worst[2]["predicted"] == []  # under the threshold: not shown


def test_the_threshold_table_gives_precision_and_recall_at_every_twentieth(report):
    table = report["thresholds"]
    at = {t: i for i, t in enumerate(table["thresholds"])}

    assert table["thresholds"][0] == 0.05 and table["thresholds"][-1] == 0.95 and len(at) == 19
    # At 0.05 the cat's 0.2 false positive counts: 3 of 4 right; at 0.3 the report's own figures.
    assert (table["precision"]["cat"][at[0.05]], table["recall"]["cat"][at[0.05]]) == (0.75, 1.0)
    assert table["precision"]["cat"][at[0.3]] == report["per_class"][0]["precision"] == 1.0
    assert table["precision"]["all"][at[0.3]] == pytest.approx(report["precision"])
    # At 0.95 only the false dog (0.95) is left (the 0.99 one lies in DontCare): nothing right.
    assert (table["precision"]["dog"][at[0.95]], table["recall"]["dog"][at[0.95]]) == (0.0, 0.0)
    assert table["recall"]["cat"][at[0.95]] == 0.0 and table["precision"]["bird"] == [0.0] * 19
