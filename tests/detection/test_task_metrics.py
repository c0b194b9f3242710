"""Detection's mAP from pycocotools on hand-made boxes whose answers are known: perfect detections
score 1, a confident false positive and a missed box cost what COCO's 101-point AP says, difficult
boxes and DontCare regions count as neither a true nor a false positive, IoU 0.5 and 0.75 differ."""
from __future__ import annotations

import numpy as np
import pytest

from training.vision_tasks.detection.metrics import class_ap, coco_evaluation, map_figures, pr_curves

D = 100


def detections(*images: list[list[float]]) -> np.ndarray:
    """(N, D, 6) from each image's rows [x1, y1, x2, y2, score, class]; the rest padding (score 0, class -1)."""
    out = np.zeros((len(images), D, 6), np.float32)
    out[:, :, 5] = -1
    for i, rows in enumerate(images):
        for j, row in enumerate(sorted(rows, key=lambda r: -r[4])):
            out[i, j] = row
    return out


def truth(*images: list[list[float]]) -> np.ndarray:
    """(N, K, 6) from each image's rows [class, x1, y1, x2, y2, flag]; padding class -1."""
    k = max(1, *(len(rows) for rows in images))
    out = np.zeros((len(images), k, 6), np.float32)
    out[:, :, 0] = -1
    for i, rows in enumerate(images):
        for j, row in enumerate(rows):
            out[i, j] = row
    return out


def figures(found: np.ndarray, true: np.ndarray, classes: int = 1) -> dict[str, float]:
    return map_figures(coco_evaluation(found, true, classes))


CAT = [0, 10, 10, 50, 50, 0]
DOG = [1, 60, 20, 100, 80, 0]


def test_perfect_detections_score_one():
    true = truth([CAT, DOG], [DOG])
    found = detections([[10, 10, 50, 50, 0.9, 0], [60, 20, 100, 80, 0.8, 1]], [[60, 20, 100, 80, 0.7, 1]])

    assert figures(found, true, 2) == pytest.approx({"map_50": 1.0, "map": 1.0})


def test_a_false_positive_scoring_above_the_true_one_halves_precision_at_the_start():
    # Ranked: a false positive (0.9), then the cat (0.8). Precision at recall 1 is 1/2, and COCO's
    # interpolated precision is that 1/2 at every one of its 101 recall points.
    true = truth([CAT])
    found = detections([[200, 200, 240, 240, 0.9, 0], [10, 10, 50, 50, 0.8, 0]])

    assert figures(found, true) == pytest.approx({"map_50": 0.5, "map": 0.5})


def test_a_false_positive_scoring_below_costs_nothing():
    true = truth([CAT])
    found = detections([[10, 10, 50, 50, 0.9, 0], [200, 200, 240, 240, 0.5, 0]])

    assert figures(found, true) == pytest.approx({"map_50": 1.0, "map": 1.0})


def test_a_missed_box_caps_recall():
    # Two cats, one found: precision 1 up to recall 0.5, nothing after: 51 of 101 recall points.
    true = truth([CAT, [0, 100, 100, 140, 140, 0]])
    found = detections([[10, 10, 50, 50, 0.9, 0]])

    assert figures(found, true) == pytest.approx({"map_50": 51 / 101, "map": 51 / 101})


def test_a_detection_on_a_difficult_box_is_neither_true_nor_false():
    difficult = [0, 100, 100, 140, 140, 1]
    true = truth([CAT, difficult])
    # Without the flag the top detection would be a true positive and the cat's recall would stay 1/2.
    found = detections([[100, 100, 140, 140, 0.95, 0], [10, 10, 50, 50, 0.9, 0]])

    assert figures(found, true) == pytest.approx({"map_50": 1.0, "map": 1.0})
    # An unflagged second box missed instead: recall 1/2 (the top detection matches it; the cat follows).
    assert figures(found, truth([CAT, [0, 100, 100, 140, 140, 0]]))["map_50"] == pytest.approx(1.0)
    assert figures(detections([[10, 10, 50, 50, 0.9, 0]]), truth([CAT, difficult]))["map_50"] == pytest.approx(1.0)


def test_a_detection_of_any_class_inside_dont_care_is_ignored():
    dont_care = [-2, 100, 100, 200, 200, 0]
    true = truth([CAT, dont_care])
    # A confident cat and a dog inside the DontCare region, half its size: neither counts.
    found = detections([[120, 120, 170, 170, 0.95, 0], [110, 110, 160, 160, 0.9, 1], [10, 10, 50, 50, 0.8, 0]])

    assert figures(found, true, 2) == pytest.approx({"map_50": 1.0, "map": 1.0})
    # The same detections with no DontCare region: the cat's AP is 1/2, the dog has no truth (left out).
    assert figures(found, truth([CAT]), 2)["map_50"] == pytest.approx(0.5)


def test_a_dont_care_region_is_never_a_box_to_find():
    true = truth([CAT, [-2, 100, 100, 200, 200, 0]])
    found = detections([[10, 10, 50, 50, 0.9, 0]])

    assert figures(found, true) == pytest.approx({"map_50": 1.0, "map": 1.0})


def test_a_loose_box_counts_at_iou_0_5_and_not_at_0_75():
    # Truth 40x40 at (10, 10); the box shifted 11 px right: IoU 29*40 / (2*1600 - 1160) = 0.569.
    true = truth([CAT])
    found = detections([[21, 10, 61, 50, 0.9, 0]])
    evaluation = coco_evaluation(found, true, 1)

    assert map_figures(evaluation) == pytest.approx({"map_50": 1.0, "map": 0.2})  # 0.5 and 0.55 of 10 thresholds
    assert evaluation.stats[2] == pytest.approx(0.0)  # AP at IoU 0.75


def test_images_with_no_boxes_count_only_their_false_positives():
    true = truth([CAT], [])
    assert figures(detections([[10, 10, 50, 50, 0.9, 0]], []), true) == pytest.approx({"map_50": 1.0, "map": 1.0})
    # A confident false positive on the empty image ranks first: precision 1/2 at recall 1.
    found = detections([[10, 10, 50, 50, 0.8, 0]], [[5, 5, 30, 30, 0.9, 0]])
    assert figures(found, true)["map_50"] == pytest.approx(0.5)


def test_no_ground_truth_at_all_scores_zero_and_no_detections_score_zero():
    assert figures(detections([[10, 10, 50, 50, 0.9, 0]]), truth([])) == {"map_50": 0.0, "map": 0.0}
    assert figures(detections([]), truth([CAT])) == {"map_50": 0.0, "map": 0.0}


def test_a_class_without_truth_has_no_ap_and_no_pr_curve():
    evaluation = coco_evaluation(detections([[10, 10, 50, 50, 0.9, 0]]), truth([CAT]), 2)

    assert class_ap(evaluation) == [{"ap_50": pytest.approx(1.0), "ap": pytest.approx(1.0)},
                                    {"ap_50": None, "ap": None}]
    curves = pr_curves(evaluation, ["cat", "dog"])
    assert list(curves) == ["cat"]
    assert len(curves["cat"]["recall"]) == 101 and curves["cat"]["recall"][:3] == [0.0, 0.01, 0.02]
    assert curves["cat"]["precision"] == pytest.approx([1.0] * 101)


def test_bad_shapes_and_classes_are_refused():
    with pytest.raises(ValueError, match=r"\(N, D, 6\)"):
        coco_evaluation(np.zeros((1, 100, 5)), truth([CAT]), 1)
    with pytest.raises(ValueError, match="1 images of detections against 2"):
        coco_evaluation(detections([]), truth([CAT], [CAT]), 1)
    with pytest.raises(ValueError, match="class 3, outside the 2 classes"):
        coco_evaluation(detections([]), truth([[3, 1, 1, 5, 5, 0]]), 2)
    with pytest.raises(ValueError, match="detection .* class 2"):
        coco_evaluation(detections([[1, 1, 5, 5, 0.9, 2]]), truth([CAT]), 2)


def test_the_all_areas_figures_are_those_of_cocoeval_with_its_four_area_ranges():
    """coco_evaluation matches only COCO's "all" area range (4x less work): the same mAPs as COCOeval's defaults."""
    import contextlib
    import io

    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(3)
    images_true, images_found = [], []
    for _ in range(20):
        true, found = [], []
        for _box in range(int(rng.integers(0, 6))):
            x, y, side = *rng.uniform(0, 200, 2), rng.uniform(4, 120)
            cls = int(rng.integers(0, 3))
            true.append([cls, x, y, x + side, y + side, float(rng.random() < 0.1)])
            jitter = rng.normal(0, side / 8, 4)
            found.append([x + jitter[0], y + jitter[1], x + side + jitter[2], y + side + jitter[3], rng.random(), cls])
        found += [[*(xy := rng.uniform(0, 200, 2)), *(xy + rng.uniform(4, 60, 2)), rng.random() / 2, int(rng.integers(0, 3))]
                  for _ in range(int(rng.integers(0, 8)))]
        images_true.append(true)
        images_found.append(found)
    ours = coco_evaluation(detections(*images_found), truth(*images_true), 3)

    reference = COCOeval(ours.cocoGt, ours.cocoDt, iouType="bbox")  # the same annotations, default parameters
    with contextlib.redirect_stdout(io.StringIO()):
        reference.evaluate()
        reference.accumulate()
        reference.summarize()

    assert len(reference.params.areaRng) == 4 and len(ours.params.areaRng) == 1
    assert 0.1 < ours.stats[1] < 0.99  # neither trivial nor perfect
    assert ours.stats[:3] == pytest.approx(reference.stats[:3]) and ours.stats[6:9] == pytest.approx(reference.stats[6:9])
