"""What detection's `infer` answers: the detector's boxes above the score threshold, best first, with
labels, put back on the uploaded image's own pixels by undoing each resize mode exactly as
datasets.ingest.images made the network's input (scale, then a centre crop or a fill per axis)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from datasets.ingest.images import ImageSpec, resize_image, scaled_size
from training.vision_tasks import vision_task

CLASSES = ["cat", "dog"]
TASK = vision_task("detection")


def outputs(*rows: list[float], d: int = 100) -> np.ndarray:
    out = np.zeros((d, 6), np.float32)
    out[:, 5] = -1
    out[: len(rows)] = rows
    return out


def placed(box: list[float], own: tuple[int, int], mode: str, fitted: tuple[int, int] = (32, 32)) -> list[float]:
    """`box` (network pixels) on a `own` (width, height) image of a dataset of `fitted` size and `mode`."""
    spec = ImageSpec(fitted[0], fitted[1], 3, mode, 10**8)
    answer = {"boxes": [{"label": "cat", "class_index": 0, "score": 0.9, "box": box}]}
    boxes = TASK.answer_to_image(answer, *own, scaled_size(*own, spec), fitted)["boxes"]
    return boxes[0]["box"] if boxes else []


def test_the_answer_keeps_the_boxes_at_or_above_the_threshold_best_first_with_labels():
    found = outputs([1, 2, 3, 4, 0.5, 1], [5, 6, 7, 8, 0.9, 0], [9, 9, 12, 12, 0.29, 0], [0, 0, 2, 2, 0.3, 1])

    answer = TASK.infer_answer(found, CLASSES)

    assert answer["boxes"] == [
        {"label": "cat", "class_index": 0, "score": pytest.approx(0.9), "box": [5, 6, 7, 8]},
        {"label": "dog", "class_index": 1, "score": pytest.approx(0.5), "box": [1, 2, 3, 4]},
        {"label": "dog", "class_index": 1, "score": pytest.approx(0.3), "box": [0, 0, 2, 2]},
    ]
    assert len(TASK.infer_answer(found, CLASSES, score_threshold=0.6)["boxes"]) == 1
    # Threshold 0 keeps every box the detector kept, never its padding rows (score 0, class -1).
    assert len(TASK.infer_answer(found, CLASSES, score_threshold=0.0)["boxes"]) == 4


def test_a_class_outside_the_datasets_or_a_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="class 2, outside the 2 classes"):
        TASK.infer_answer(outputs([1, 2, 3, 4, 0.9, 2]), CLASSES)
    with pytest.raises(ValueError, match=r"\(D, 6\)"):
        TASK.infer_answer(np.zeros((100, 5)), CLASSES)


def test_squash_scales_each_axis_by_its_own_ratio():
    # 64x48 squashed to 32x32: x doubles, y grows by 1.5.
    assert placed([8, 8, 16, 16], (64, 48), "squash") == [16, 12, 32, 24]


def test_crop_adds_back_the_cut_off_margin_then_scales():
    # 96x48 scaled by 1/1.5 to 64x32, the middle 32 columns kept: 16 cut off on the left.
    assert placed([0, 8, 16, 24], (96, 48), "crop") == [24, 12, 48, 36]


def test_fill_takes_off_the_filled_margin_clips_to_the_image_and_drops_boxes_in_the_fill():
    # 96x48 scaled by 1/3 to 32x16, placed 8 rows down in 32x32 of noise.
    assert placed([4, 10, 20, 20], (96, 48), "fill") == [12, 6, 60, 36]
    assert placed([4, 2, 20, 12], (96, 48), "fill") == [12, 0, 60, 12]  # half in the fill: clipped
    assert placed([4, 0, 20, 6], (96, 48), "fill") == []  # wholly in the fill: left out


def test_half_crop_crops_one_axis_and_fills_the_other():
    # 96x48 at the mean ratio 2.25: 43x21; 5 columns cut off on the left, 5 rows of fill on top.
    assert scaled_size(96, 48, ImageSpec(32, 32, 3, "half_crop", 10**8)) == (43, 21)
    assert placed([3, 10, 11, 26], (96, 48), "half_crop") == pytest.approx([8 * 96 / 43, 5 * 48 / 21, 16 * 96 / 43, 48])


def test_the_answer_says_the_images_own_size():
    answer = TASK.infer_answer(outputs([8, 8, 16, 16, 0.9, 0]), CLASSES)
    placed_answer = TASK.answer_to_image(answer, 64, 48, (32, 32), (32, 32))
    assert (placed_answer["width"], placed_answer["height"]) == (64, 48)
    with pytest.raises(ValueError, match="network input's size"):
        TASK.answer_to_image(answer, 64, 48, (32, 32))


@pytest.mark.parametrize("mode", ["squash", "crop", "fill", "half_crop"])
def test_a_box_found_on_the_networks_input_lands_on_the_object_in_the_upload(mode):
    """The real resize (datasets.ingest.images) of an upload with a bright rectangle: the rectangle's
    box on the network's input, put back, is the rectangle, within one input pixel's worth."""
    own, fitted = (120, 60), (40, 32)
    rect = (50, 20, 80, 44)  # x1, y1, x2, y2 (continuous: pixels 50..79 and 20..43)
    pixels = np.zeros((own[1], own[0], 3), np.uint8)
    pixels[..., 2] = 255  # a blue image with a yellow rectangle
    pixels[rect[1]:rect[3], rect[0]:rect[2]] = (255, 255, 0)
    spec = ImageSpec(fitted[0], fitted[1], 3, mode, 10**8)
    network = resize_image(Image.fromarray(pixels), spec, np.random.default_rng(0)).astype(int)
    yellow = (network[..., 0] > 200) & (network[..., 1] > 200) & (network[..., 2] < 60)
    # The fill's noise has a yellow pixel here and there, never a 3x3 block of them: erode, then grow back.
    solid = np.ones_like(yellow)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            solid &= np.roll(yellow, (dy, dx), axis=(0, 1))
    ys, xs = np.nonzero(solid)
    box = [float(xs.min() - 1), float(ys.min() - 1), float(xs.max() + 2), float(ys.max() + 2)]

    back = placed(box, own, mode, fitted)

    scaled = scaled_size(*own, spec)
    tolerance = [own[0] / scaled[0], own[1] / scaled[1]] * 2
    assert np.all(np.abs(np.array(back) - np.array(rect)) <= np.array(tolerance) + 1e-6), (back, rect, tolerance)
