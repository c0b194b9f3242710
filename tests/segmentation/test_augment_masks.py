"""Augmenting a segmentation batch: every geometric move takes the mask with the image (nearest
neighbour, uncovered pixels unlabelled), colour and noise leave it alone, and the images change
exactly as a classification batch's would from the same seed."""
from __future__ import annotations

import pytest
import torch

from training.augmentation import augmentation_parse
from training.torch.augment import Augmenter, affine_grid, resample_masks

CPU = torch.device("cpu")
IGNORE = 255
GEOMETRIC = [{"flip": "both"}, {"rot90": True}, {"crop_padding": 3}, {"rotate_degrees": 40}, {"translate": 0.2},
             {"scale": [0.6, 1.5]}, {"rotate_degrees": 30, "translate": 0.1, "scale": [0.8, 1.2], "crop_padding": 2,
                                     "flip": "both", "rot90": True}]
EXACT = GEOMETRIC[:3]


def pattern(n: int = 12, size: int = 32, seed: int = 0, unlabelled: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks of 8 x 8 blocks of classes 0..3 with a few unlabelled pixels; images whose channel 0 is
    the class times 10 (200 where unlabelled), channel 1 never 0, channel 2 noise."""
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randint(0, 4, (n, size // 8, size // 8), generator=g)
    masks = blocks.repeat_interleave(8, 1).repeat_interleave(8, 2).to(torch.uint8)
    masks[torch.rand(masks.shape, generator=g) < unlabelled] = IGNORE
    images = torch.stack([torch.where(masks == IGNORE, 200, masks * 10).to(torch.uint8),
                          torch.full_like(masks, 100),
                          torch.randint(0, 256, masks.shape, generator=g, dtype=torch.uint8)], 1)
    return images, masks


def augmenter(**keys: object) -> Augmenter:
    return Augmenter(augmentation_parse(keys, channels=3), 7, CPU)


def labelled_agreement(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per labelled pixel: does the image's channel 0 still say the mask's class?"""
    labelled = masks != IGNORE
    return ((images[:, 0] * 255).round() == masks.float() * 10)[labelled]


@pytest.mark.parametrize("keys", EXACT, ids=lambda k: ",".join(k))
def test_the_exact_moves_keep_image_and_mask_aligned_pixel_for_pixel(keys):
    images, masks = pattern()

    out, moved = augmenter(**keys).with_masks(images, masks, IGNORE)

    assert moved.dtype == torch.uint8 and moved.shape == masks.shape
    assert bool(labelled_agreement(out, moved).all())
    assert not torch.equal(moved, masks), "something moved"


@pytest.mark.parametrize("keys", GEOMETRIC, ids=lambda k: ",".join(k))
def test_every_geometric_move_takes_the_mask_along_and_leaves_uncovered_pixels_unlabelled(keys):
    images, masks = pattern(unlabelled=0.0)  # no unlabelled pixels to blur into their neighbours

    out, moved = augmenter(**keys).with_masks(images, masks, IGNORE)

    # Bilinear images blur across block edges, nearest masks do not: nearly every labelled pixel's
    # image is nearer its mask's class (x 10) than any other class (a mask left unmoved: 0.3 to 0.6).
    labelled = moved != IGNORE
    nearest_class = ((out[:, 0] * 255 - moved.float() * 10).abs() < 5)[labelled]
    assert float(nearest_class.float().mean()) > 0.9
    assert set(moved.unique().tolist()) <= {0, 1, 2, 3, IGNORE}
    uncovered = out[:, 1] == 0  # channel 1 is never 0 on the picture itself
    assert bool((moved[uncovered] == IGNORE).all())
    assert torch.equal(out, augmenter(**keys)(images)), "the images change as a classification batch's would"


def test_a_whole_pixel_translation_of_the_resampling_moves_the_mask_exactly():
    images, masks = pattern(n=4)
    x = images.float() / 255
    n = len(x)
    grid = affine_grid(x, torch.zeros(n), torch.ones(n), torch.full((n,), 3 / 32), torch.full((n,), -5 / 32))

    moved_images = torch.nn.functional.grid_sample(x, grid, align_corners=False)
    moved = resample_masks(masks, grid, IGNORE)

    # 3 pixels right, 5 up
    assert torch.equal(moved[:, :-5, 3:], masks[:, 5:, :-3])
    assert bool((moved[:, -5:] == IGNORE).all()) and bool((moved[:, :, :3] == IGNORE).all())
    assert bool(labelled_agreement(moved_images, moved).all())


def test_colour_shifts_and_noise_leave_the_mask_alone():
    images, masks = pattern()
    keys = {"hsv": {"hue": 0.2, "saturation": 0.3, "value": 0.3}, "noise_std": 0.1}

    out, same = augmenter(**keys).with_masks(images, masks, IGNORE)

    assert torch.equal(same, masks)
    assert torch.equal(out, augmenter(**keys)(images))
    assert not torch.equal(out, images.float() / 255)
