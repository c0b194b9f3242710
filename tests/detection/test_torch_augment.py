"""Augmentation moves a detection batch's boxes with its pixels (Augmenter.with_boxes): white
rectangles are drawn on black images, augmented, and each moved box must enclose where its
rectangle's pixels went; photometric changes leave boxes alone; boxes pushed out are dropped,
those half out clipped."""
from __future__ import annotations

import pytest
import torch

from training.augmentation import Augmentation
from training.torch.augment import Augmenter, clip_boxes

CPU = torch.device("cpu")
N, SIZE = 48, 40


def rectangles(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, 40, 40) uint8 images, each one white rectangle, and its (N, 2, 6) boxes (one padding row)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(N, 1, SIZE, SIZE, dtype=torch.uint8)
    boxes = torch.zeros(N, 2, 6)
    boxes[:, 1, 0] = -1
    for i in range(N):
        x, y = torch.randint(2, 24, (2,), generator=g).tolist()
        w, h = torch.randint(5, 14, (2,), generator=g).tolist()
        images[i, 0, y : y + h, x : x + w] = 255
        boxes[i, 0] = torch.tensor([i % 3, x, y, x + w, y + h, i % 2])
    return images, boxes


def ink_box(image: torch.Tensor) -> list[float]:
    ink = image[0] > 0.5
    rows, cols = ink.any(1).nonzero().flatten(), ink.any(0).nonzero().flatten()
    return [float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)]


def moved(spec: Augmentation, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images, boxes = rectangles()
    out, out_boxes = Augmenter(spec, seed, CPU).with_boxes(images.clone(), boxes.clone())
    return out, out_boxes, boxes


EXACT = [Augmentation(flip="horizontal"), Augmentation(flip="vertical"), Augmentation(flip="both", rot90=True),
         Augmentation(crop_padding=6), Augmentation(flip="both", rot90=True, crop_padding=4)]


@pytest.mark.parametrize("spec", EXACT, ids=lambda s: repr({k: v for k, v in s.as_dict().items() if v != getattr(Augmentation(), k)}))
def test_exact_moves_take_each_box_exactly_where_its_pixels_went(spec):
    out, out_boxes, before = moved(spec)

    kept = 0
    for i in range(N):
        if out_boxes[i, 0, 0] < 0:
            continue  # cropped away (crop_padding only)
        kept += 1
        assert out_boxes[i, 0, 1:5].tolist() == ink_box(out[i]), i
        assert out_boxes[i, 0, 0] == before[i, 0, 0] and out_boxes[i, 0, 5] == before[i, 0, 5]  # class and flag kept
    assert kept > N * 0.8
    assert bool((out_boxes[:, 1] == torch.tensor([-1.0, 0, 0, 0, 0, 0])).all())  # padding stays padding
    assert not torch.equal(out_boxes, before)  # something did move


@pytest.mark.parametrize("spec", [Augmentation(scale=(0.7, 1.3)), Augmentation(translate=0.15),
                                  Augmentation(scale=(0.8, 1.2), translate=0.1, crop_padding=4, flip="horizontal")],
                         ids=["scale", "translate", "scale+translate+crop+flip"])
def test_scale_and_translate_move_each_box_to_within_half_a_pixel_of_its_pixels(spec):
    out, out_boxes, _ = moved(spec)

    errors = [max(abs(a - b) for a, b in zip(out_boxes[i, 0, 1:5].tolist(), ink_box(out[i])))
              for i in range(N) if out_boxes[i, 0, 0] >= 0 and out_boxes[i, 0, 3] - out_boxes[i, 0, 1] < SIZE]
    assert len(errors) > N * 0.7 and max(errors) <= 0.51  # bilinear resampling blurs the edge by half a pixel


def test_a_rotation_gives_the_box_enclosing_the_turned_one():
    out, out_boxes, _ = moved(Augmentation(rotate_degrees=30))

    for i in range(N):
        if out_boxes[i, 0, 0] < 0:
            continue
        x1, y1, x2, y2 = ink_box(out[i])
        bx1, by1, bx2, by2 = out_boxes[i, 0, 1:5].tolist()
        assert bx1 <= x1 + 0.6 and by1 <= y1 + 0.6 and bx2 >= x2 - 0.6 and by2 >= y2 - 0.6


def test_photometric_changes_leave_the_boxes_alone():
    images, boxes = rectangles()
    colour = torch.cat([images] * 3, 1)
    out, out_boxes = Augmenter(Augmentation(hsv=(0.1, 0.3, 0.3), noise_std=0.05), 3, CPU).with_boxes(colour, boxes)

    assert torch.equal(out_boxes, boxes) and not torch.equal(out, colour.float() / 255)


def test_the_same_draws_move_images_as_plain_augmentation_does():
    images, boxes = rectangles()
    spec = Augmentation(flip="both", crop_padding=3, scale=(0.9, 1.1), noise_std=0.1)

    with_boxes, _ = Augmenter(spec, 7, CPU).with_boxes(images.clone(), boxes)
    plain = Augmenter(spec, 7, CPU)(images.clone())

    assert torch.equal(with_boxes, plain)


def test_boxes_pushed_out_are_dropped_and_those_half_out_are_clipped():
    boxes = torch.tensor([[[0, -20, 5, -2, 15, 0],  # wholly left of the image
                           [1, -4, 10, 6, 20, 0],  # 6 of 10 px wide inside: clipped
                           [2, 35, 35, 50, 50, 1],  # 5x5 of 15x15 inside: under a quarter, dropped
                           [-2, 30, 0, 44, 10, 0],  # a DontCare region, clipped too
                           [-1, 0, 0, 0, 0, 0]]], dtype=torch.float32)

    clipped = clip_boxes(boxes, 40, 40)[0].tolist()

    assert clipped == [[-1, 0, 0, 0, 0, 0], [1, 0, 10, 6, 20, 0], [-1, 0, 0, 0, 0, 0], [-2, 30, 0, 40, 10, 0],
                       [-1, 0, 0, 0, 0, 0]]
