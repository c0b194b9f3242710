"""CenterNet's targets, loss and decoding (training.torch.detection) on hand-made boxes: a peak of
exactly 1 at every target's centre cell (the focal loss's only positives), DontCare and flagged
boxes neither targets nor background, the loss's three parts, and decoding that gives back the
boxes a perfect head encodes."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.torch.detection import (
    DETECTIONS,
    DetectionLoss,
    decode,
    focal_loss,
    gaussian_radius,
    init_head,
    render_targets,
)


def boxes(*rows: list[float], k: int = 4) -> torch.Tensor:
    """One image's (1, k, 6) rows [class, x1, y1, x2, y2, flag], padded with class -1."""
    out = torch.zeros(1, k, 6)
    out[0, :, 0] = -1
    if rows:
        out[0, : len(rows)] = torch.tensor(rows)
    return out


def test_the_peak_is_exactly_1_at_the_centre_cell_even_when_the_centre_is_between_cells():
    # Centre (27, 23) px is cell (6.75, 5.75): a Gaussian centred there would peak below 1 and
    # leave the focal loss no positive at all.
    t = render_targets(boxes([1, 7, 3, 47, 43, 0]), classes=2, cells=(16, 16))

    assert t.heatmap[0, 1, 5, 6] == 1.0
    assert int((t.heatmap == 1).sum()) == 1 and float(t.heatmap[0, 0].max()) == 0.0
    assert 0 < t.heatmap[0, 1, 5, 7] < 1 and 0 < t.heatmap[0, 1, 7, 6] < 1  # the Gaussian around it (radius 2)
    assert t.heatmap[0, 1, 5, 7] == t.heatmap[0, 1, 5, 5] and t.heatmap[0, 1, 5, 9] == 0
    assert t.cell[0, 0] == 5 * 16 + 6
    assert torch.allclose(t.offset[0, 0], torch.tensor([0.75, 0.75]))
    assert torch.equal(t.size[0, 0], torch.tensor([40.0, 40.0]))


def test_every_target_box_has_its_own_positive_and_padding_has_none():
    t = render_targets(boxes([0, 0, 0, 4, 4, 0], [0, 20, 20, 30, 28, 0], [1, 10, 2, 14, 30, 0]), classes=2, cells=(8, 8))

    assert t.target[0].tolist() == [True, True, True, False]
    assert int((t.heatmap == 1).sum()) == 3
    assert t.heatmap[0, 0, 0, 0] == 1 and t.heatmap[0, 0, 6, 6] == 1 and t.heatmap[0, 1, 4, 3] == 1


def test_the_radius_grows_with_the_box_as_centernets_does():
    radius = gaussian_radius(torch.tensor([2.0, 8.0, 32.0]), torch.tensor([2.0, 8.0, 32.0]))
    assert radius[0] < radius[1] < radius[2]
    # CenterNet's gaussian_radius((32, 32), 0.7) for a 128 px box at stride 4.
    assert float(radius[2]) == pytest.approx(8.746, abs=1e-3)


def test_dontcare_and_flagged_boxes_are_no_targets_and_their_area_is_not_pushed_to_background():
    t = render_targets(boxes([-2, 0, 0, 16, 16, 0], [1, 16, 16, 32, 32, 1], [0, 20, 0, 28, 8, 0]), classes=2,
                       cells=(8, 8))

    assert t.target[0].tolist() == [False, False, True, False]
    assert int((t.heatmap == 1).sum()) == 1
    assert bool(t.ignored[0, 0, :4, :4].all()) and bool(t.ignored[0, 0, 4:, 4:].all())
    assert not bool(t.ignored[0, 0, :4, 4:].any())
    # A confident false positive inside the DontCare region costs nothing; outside it, it costs.
    logits = torch.full((1, 2, 8, 8), -6.0)
    base = focal_loss(logits, t.heatmap, t.ignored)
    inside, outside = logits.clone(), logits.clone()
    inside[0, 0, 1, 1] = 6.0
    outside[0, 0, 6, 1] = 6.0
    assert float(focal_loss(inside, t.heatmap, t.ignored)) == pytest.approx(float(base))
    assert float(focal_loss(outside, t.heatmap, t.ignored)) > float(base) + 1


def test_the_loss_is_small_for_a_perfect_head_and_reports_its_three_parts():
    truth = boxes([1, 6, 2, 20, 16, 0], [0, 3, 20, 9, 30, 0])
    raw = perfect_head(truth, classes=2, cells=(8, 8))
    loss_fn = DetectionLoss(2)

    good = loss_fn(raw, truth)
    parts = dict(loss_fn.parts)
    bad = loss_fn(torch.zeros_like(raw), truth)

    assert set(parts) == {"loss_heatmap", "loss_size", "loss_offset"}
    assert parts["loss_size"] == pytest.approx(0, abs=1e-5) and parts["loss_offset"] == pytest.approx(0, abs=1e-5)
    assert float(good) == pytest.approx(float(parts["loss_heatmap"] + 0.1 * parts["loss_size"] + parts["loss_offset"]))
    assert float(good) < 0.05 < float(bad)
    assert float(loss_fn.parts["loss_size"]) == pytest.approx((14 + 14 + 6 + 10) / 4)  # |0 - size| per coordinate


def test_an_image_without_boxes_only_teaches_the_background():
    loss_fn = DetectionLoss(3)
    quiet, loud = torch.full((1, 7, 4, 4), -8.0), torch.full((1, 7, 4, 4), 3.0)

    assert float(loss_fn(quiet, boxes(k=2))) < 1e-3 < float(loss_fn(loud, boxes(k=2)))
    assert float(loss_fn.parts["loss_size"]) == 0 and float(loss_fn.parts["loss_offset"]) == 0


def perfect_head(truth: torch.Tensor, classes: int, cells: tuple[int, int]) -> torch.Tensor:
    """The raw head (N, C + 4, h, w) that says exactly `truth`: logits +-9 at the peaks, the sizes and
    offsets at the centre cells."""
    t = render_targets(truth, classes, cells)
    n, h, w = truth.shape[0], cells[0], cells[1]
    raw = torch.zeros(n, classes + 4, h * w)
    raw[:, :classes] = torch.where(t.heatmap == 1, 9.0, -9.0).flatten(2)
    for i in range(n):
        for j in torch.nonzero(t.target[i]).flatten().tolist():
            raw[i, classes:, t.cell[i, j]] = torch.cat([t.size[i, j], t.offset[i, j]])
    return raw.view(n, classes + 4, h, w)


def test_decoding_a_perfect_head_gives_back_the_boxes_best_first_then_padding():
    truth = boxes([1, 6, 2, 20, 16, 0], [0, 3, 20, 9, 30, 0], [1, 22.5, 21, 31, 31.5, 0])

    rows = decode(perfect_head(truth, classes=2, cells=(8, 8)), classes=2, input_size=(32, 32))

    assert rows.shape == (1, DETECTIONS, 6)
    found = sorted(rows[0, :3].tolist(), key=lambda r: r[0])
    expected = sorted(truth[0, :3].tolist(), key=lambda r: r[1])
    for row, box in zip(found, expected):
        assert row[:4] == pytest.approx(box[1:5], abs=1e-4)
        assert row[5] == box[0] and row[4] == pytest.approx(1 / (1 + math.exp(-9)))
    assert bool((rows[0, 3:, 4] < 0.01).all())  # every other cell: a low score
    assert bool((rows[0, :, 4][:-1] >= rows[0, :, 4][1:]).all())


def test_a_small_map_pads_its_detections_with_score_0_and_class_minus_1():
    rows = decode(torch.zeros(2, 5, 2, 3), classes=1)  # 6 cells, one class: 6 candidates at most

    assert rows.shape == (2, DETECTIONS, 6)
    assert bool((rows[:, 6:, 4] == 0).all()) and bool((rows[:, 6:, 5] == -1).all())


def test_peak_picking_keeps_one_box_per_local_maximum():
    raw = torch.full((1, 5, 8, 8), -9.0)
    raw[0, 1:] = 0
    raw[0, 0, 3, 3], raw[0, 0, 3, 4], raw[0, 0, 6, 6] = 4.0, 3.0, 2.0  # (3, 4) sits beside a higher peak

    rows = decode(raw, classes=1, input_size=(32, 32))

    strong = rows[0][rows[0, :, 4] > 0.5]
    assert [(r[0].item(), r[1].item()) for r in strong] == [(12.0, 12.0), (24.0, 24.0)]


def test_the_heatmap_biases_start_at_minus_2_19_and_the_rest_are_left_alone():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 6, 1))
    before = model[1].bias[2:].clone()

    init_head(model, classes=2)

    assert np.allclose(model[1].bias[:2].detach().numpy(), -2.1972, atol=1e-4)
    assert torch.equal(model[1].bias[2:], before)
    assert float(torch.sigmoid(model[1].bias[0].detach())) == pytest.approx(0.1)
