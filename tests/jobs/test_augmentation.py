"""Augmentation: the spec refuses what it cannot do, naming the key; each batched operation does
exactly what it says, over a whole batch at once, reproducibly from the seed."""
from __future__ import annotations

import colorsys

import pytest
import torch

from training.augmentation import Augmentation, AugmentationError, augmentation_parse
from training.torch.augment import (
    Augmenter,
    affine,
    flip,
    hsv_shift,
    hsv_to_rgb,
    mean_to_subtract,
    pad_crop,
    rgb_to_hsv,
    rot90,
)

CPU = torch.device("cpu")
EVERYTHING = {"flip": "both", "rot90": True, "rotate_degrees": 30, "translate": 0.1, "scale": [0.9, 1.1],
              "crop_padding": 2, "noise_std": 0.05, "hsv": {"hue": 0.1, "saturation": 0.2, "value": 0.2}}


def batch(n: int = 16, c: int = 3, h: int = 8, w: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def augmenter(seed: int = 0, channels: int = 3, **keys: object) -> Augmenter:
    return Augmenter(augmentation_parse(keys, channels=channels), seed, CPU)


# --- the spec ---------------------------------------------------------------------------------

def test_it_is_all_off_by_default():
    spec = augmentation_parse({}, channels=1)

    assert spec == Augmentation() and not spec.active and spec.mean == "image"
    assert not augmentation_parse({"mean": "none", "flip": "none", "scale": [1, 1]}, channels=1).active


def test_it_normalises_every_key():
    spec = augmentation_parse({**EVERYTHING, "flip": "Horizontal", "mean": "pixel"}, channels=3)

    assert spec.flip == "horizontal" and spec.scale == (0.9, 1.1) and spec.hsv == (0.1, 0.2, 0.2)
    assert spec.as_dict()["hsv"] == {"hue": 0.1, "saturation": 0.2, "value": 0.2}
    assert spec.as_dict()["scale"] == [0.9, 1.1] and spec.active


@pytest.mark.parametrize("raw,key", [
    ({"shear": 3}, "augmentation.shear"),
    ({"flip": "diagonal"}, "augmentation.flip"),
    ({"rot90": "yes"}, "augmentation.rot90"),
    ({"rotate_degrees": 181}, "augmentation.rotate_degrees"),
    ({"rotate_degrees": -1}, "augmentation.rotate_degrees"),
    ({"rotate_degrees": True}, "augmentation.rotate_degrees"),
    ({"translate": 0.6}, "augmentation.translate"),
    ({"scale": [1.2, 0.8]}, "augmentation.scale"),
    ({"scale": 1.1}, "augmentation.scale"),
    ({"scale": [0, 1]}, "augmentation.scale"),
    ({"crop_padding": 2.5}, "augmentation.crop_padding"),
    ({"crop_padding": -1}, "augmentation.crop_padding"),
    ({"noise_std": float("nan")}, "augmentation.noise_std"),
    ({"noise_std": 2}, "augmentation.noise_std"),
    ({"hsv": {"hue": 0.7}}, "augmentation.hsv.hue"),
    ({"hsv": {"tint": 0.1}}, "augmentation.hsv.tint"),
    ({"mean": "median"}, "augmentation.mean"),
    ([1, 2], "augmentation"),
])
def test_it_refuses_unknown_keys_and_values_out_of_range_naming_the_key(raw, key):
    with pytest.raises(AugmentationError) as refused:
        augmentation_parse(raw, channels=3)

    assert str(refused.value).startswith(f"{key}:")


def test_it_refuses_colour_shifts_on_a_grayscale_dataset_saying_why():
    message = r"augmentation.hsv: hsv shifts need a colour dataset; this one is grayscale \(1 channel\)"
    with pytest.raises(AugmentationError, match=message):
        augmentation_parse({"hsv": {"hue": 0.1}}, channels=1)
    assert augmentation_parse({"hsv": {"hue": 0.0}}, channels=1).hsv == (0.0, 0.0, 0.0)


# --- each operation ---------------------------------------------------------------------------

def test_a_horizontal_flip_mirrors_exactly():
    x = batch()
    which = torch.arange(16) % 2 == 0

    out = flip(x, which, dim=3)

    assert torch.equal(out[which], x[which].flip(3)) and torch.equal(out[~which], x[~which])
    assert torch.equal(out[0, :, :, 0], x[0, :, :, -1])


def test_the_flip_augmentation_mirrors_some_images_and_leaves_the_others():
    x = batch(64)

    out = augmenter(flip="horizontal")(x.clone())

    mirrored = [torch.equal(out[i], x[i].flip(2)) for i in range(64)]
    unchanged = [torch.equal(out[i], x[i]) for i in range(64)]
    assert all(m or u for m, u in zip(mirrored, unchanged))
    assert 16 < sum(mirrored) < 48


def test_rot90_is_exact_per_image():
    x = batch(8)
    k = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])

    out = rot90(x, k)

    for i in range(8):
        assert torch.equal(out[i], torch.rot90(x[i], int(k[i]), (1, 2)))


def test_the_rot90_augmentation_gives_exact_quarter_turns_and_keeps_non_square_shapes():
    x = batch(32)
    out = augmenter(rot90=True)(x.clone())
    for i in range(32):
        assert any(torch.equal(out[i], torch.rot90(x[i], k, (1, 2))) for k in range(4))

    wide = batch(32, h=4, w=8)
    out = augmenter(rot90=True)(wide.clone())
    assert out.shape == wide.shape
    for i in range(32):
        assert torch.equal(out[i], wide[i]) or torch.equal(out[i], torch.rot90(wide[i], 2, (1, 2)))


def test_no_rotation_translation_or_scale_is_the_identity():
    x = batch(4, h=6, w=10)
    zeros, ones = torch.zeros(4), torch.ones(4)

    assert torch.allclose(affine(x, zeros, ones, zeros, zeros), x, atol=1e-5)
    assert torch.equal(augmenter(rotate_degrees=0, translate=0, scale=[1, 1])(x.clone()), x)


def test_a_positive_quarter_turn_by_the_affine_resampling_matches_rot90():
    x = batch(2)

    out = affine(x, torch.full((2,), 90.0), torch.ones(2), torch.zeros(2), torch.zeros(2))

    assert torch.allclose(out, torch.rot90(x, 1, (2, 3)), atol=1e-5)  # counter-clockwise, as PIL turns


def test_a_translation_moves_the_picture_by_that_fraction_of_its_side():
    x = batch(1, h=8, w=8)

    out = affine(x, torch.zeros(1), torch.ones(1), torch.tensor([0.25]), torch.zeros(1))

    assert torch.allclose(out[..., 2:], x[..., :-2], atol=1e-5)
    assert float(out[..., :2].abs().max()) == 0.0


def test_pad_and_crop_takes_back_a_window_of_the_padded_image():
    x = batch(3)
    centre = torch.full((3,), 2)

    assert torch.equal(pad_crop(x, 2, centre, centre), x)
    moved = pad_crop(x, 2, torch.zeros(3, dtype=torch.long), torch.full((3,), 4))
    assert torch.equal(moved[:, :, 2:, :-2], x[:, :, :-2, 2:])
    assert float(moved[:, :, :2].abs().max()) == 0.0


def test_noise_has_the_asked_spread():
    x = torch.full((64, 1, 16, 16), 0.5)

    out = augmenter(noise_std=0.05)(x.clone())

    assert abs(float((out - x).std()) - 0.05) < 0.005


def test_rgb_and_hsv_convert_as_colorsys_does_and_back():
    x = batch(4)
    hsv = rgb_to_hsv(x)

    for i, (r, g, b) in enumerate(x[:, :, 0, 0].tolist()):
        assert hsv[i, :, 0, 0].tolist() == pytest.approx(colorsys.rgb_to_hsv(r, g, b), abs=1e-5)
    assert torch.allclose(hsv_to_rgb(hsv), x, atol=1e-5)


def test_a_third_of_a_turn_of_hue_makes_red_green():
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 1.0

    out = hsv_shift(red, torch.tensor([1 / 3]), torch.zeros(1), torch.zeros(1))

    assert torch.allclose(out[0, :, 0, 0], torch.tensor([0.0, 1.0, 0.0]), atol=1e-5)


# --- the seed ---------------------------------------------------------------------------------

def test_the_same_seed_gives_the_same_batch_and_another_seed_another():
    x = batch(16)

    first, again, other = (augmenter(seed=s, **EVERYTHING)(x.clone()) for s in (7, 7, 8))

    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert first.shape == x.shape and 0 <= float(first.min()) and float(first.max()) <= 1


def test_a_restored_generator_state_draws_the_same_next_batch():
    x = batch(8)
    running = augmenter(seed=3, **EVERYTHING)
    running(x.clone())
    state = running.state()
    want = running(x.clone())

    resumed = augmenter(seed=99, **EVERYTHING)
    resumed.load_state(state)

    assert torch.equal(resumed(x.clone()), want)


# --- the mean ---------------------------------------------------------------------------------

def test_the_mean_setting_says_what_is_subtracted():
    image = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 4)

    assert torch.equal(mean_to_subtract("image", image), image)
    pixel = mean_to_subtract("pixel", image)
    assert pixel.shape == image.shape and torch.allclose(pixel[:, 0, 0], image.mean(dim=(1, 2)))
    assert torch.equal(mean_to_subtract("none", image), torch.zeros_like(image))


def test_a_crop_folded_into_the_affine_resampling_takes_the_same_window():
    x = batch(3, h=6, w=10)
    zeros, ones = torch.zeros(3), torch.ones(3)
    top, left = torch.tensor([0, 2, 4]), torch.tensor([4, 2, 1])

    folded = affine(x, zeros, ones, zeros, zeros, read_at=(left - 2, top - 2))

    assert torch.allclose(folded, pad_crop(x, 2, top, left), atol=1e-5)


def test_a_uint8_batch_comes_out_as_the_float_batch_would():
    pixels = (batch(8) * 255).round().to(torch.uint8)
    keys = {"flip": "both", "rot90": True, "crop_padding": 2, "noise_std": 0.1}

    from_bytes = augmenter(seed=4, **keys)(pixels)
    from_floats = augmenter(seed=4, **keys)(pixels.float() / 255)

    assert from_bytes.dtype == torch.float32 and torch.allclose(from_bytes, from_floats, atol=1e-6)
