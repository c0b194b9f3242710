"""The jax backend's augmentation: each operation does what it says, and what torch's does with the
same numbers (training/torch/augment.py), over a whole batch inside jit, reproducibly from the key."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from training.augmentation import augmentation_parse
from training.torch import augment as torch_augment

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
from training.jax import augment  # noqa: E402

EVERYTHING = {"flip": "both", "rot90": True, "rotate_degrees": 30, "translate": 0.1, "scale": [0.9, 1.1],
              "crop_padding": 2, "noise_std": 0.05, "hsv": {"hue": 0.1, "saturation": 0.2, "value": 0.2}}
TOLERANCE = 1e-5  # float32 bilinear weights computed in a different order


def batch(n: int = 4, c: int = 3, h: int = 8, w: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, c, h, w), dtype=np.float32)


def square(h: int = 8, w: int = 8) -> np.ndarray:
    """One grey image, black but for a bright 2x2 square at rows 3..4, columns 2..3."""
    x = np.zeros((1, 1, h, w), np.float32)
    x[..., 3:5, 2:4] = 1.0
    return x


def both(name: str, x: np.ndarray, *params: object, **keywords: object) -> tuple[np.ndarray, np.ndarray]:
    """(jax's, torch's) `name`(x, params...) on the same numbers."""
    as_torch = [torch.as_tensor(np.asarray(p)) if isinstance(p, np.ndarray) else p for p in params]
    as_jax = [jnp.asarray(p) if isinstance(p, np.ndarray) else p for p in params]
    read_at = keywords.get("read_at")
    got = getattr(augment, name)(jnp.asarray(x), *as_jax,
                                 **({"read_at": tuple(jnp.asarray(v) for v in read_at)} if read_at else {}))
    want = getattr(torch_augment, name)(torch.from_numpy(x.copy()), *as_torch,
                                        **({"read_at": tuple(torch.as_tensor(v) for v in read_at)} if read_at else {}))
    return np.asarray(got), want.numpy()


def run(x: np.ndarray, seed: int = 0, channels: int = 3, **keys: object) -> np.ndarray:
    spec = augmentation_parse(keys, channels=channels)
    return np.asarray(jax.jit(lambda b, k: augment.augment(b, spec, k))(jnp.asarray(x), jax.random.key(seed)))


def full(n: int, value: float) -> np.ndarray:
    return np.full(n, value, np.float32)


# --- the affine resampling --------------------------------------------------------------------

def test_no_rotation_translation_or_scale_is_the_identity():
    x = batch(4, h=6, w=10)

    got, _ = both("affine", x, full(4, 0), full(4, 1), full(4, 0), full(4, 0))

    assert np.allclose(got, x, atol=TOLERANCE)
    assert np.array_equal(run(x, rotate_degrees=0, translate=0, scale=[1, 1], crop_padding=0), x)


def test_a_translation_of_a_quarter_moves_a_bright_square_a_quarter_of_the_width_as_torch_does():
    x = square()

    got, want = both("affine", x, full(1, 0), full(1, 1), full(1, 0.25), full(1, 0))

    assert np.allclose(got, want, atol=TOLERANCE)
    assert np.argwhere(got[0, 0] > 0.5).tolist() == [[3, 4], [3, 5], [4, 4], [4, 5]]  # 2 columns right of 2..3
    assert float(got.sum()) == pytest.approx(4.0, abs=1e-5)


@pytest.mark.parametrize(("degrees", "scale", "shift_x", "shift_y"), [
    (90.0, 1.0, 0.0, 0.0), (30.0, 1.0, 0.0, 0.0), (-17.0, 1.3, 0.1, -0.2), (45.0, 0.7, -0.3, 0.05)])
def test_rotation_scale_and_translation_resample_as_torch_does(degrees, scale, shift_x, shift_y):
    for h, w in ((8, 8), (6, 10)):
        x = batch(3, h=h, w=w)

        got, want = both("affine", x, full(3, degrees), full(3, scale), full(3, shift_x), full(3, shift_y))

        assert np.allclose(got, want, atol=TOLERANCE), (h, w)


def test_a_quarter_turn_by_the_affine_resampling_is_counter_clockwise_as_torch_s():
    x = batch(2)

    got, _ = both("affine", x, full(2, 90), full(2, 1), full(2, 0), full(2, 0))

    assert np.allclose(got, np.rot90(x, 1, (2, 3)), atol=TOLERANCE)


def test_a_scale_above_one_zooms_in_leaving_no_black_border():
    x = np.ones((1, 1, 8, 8), np.float32)

    zoomed, want = both("affine", x, full(1, 0), full(1, 2), full(1, 0), full(1, 0))
    shrunk, _ = both("affine", x, full(1, 0), full(1, 0.5), full(1, 0), full(1, 0))

    assert np.allclose(zoomed, want, atol=TOLERANCE) and float(zoomed.min()) == pytest.approx(1.0)
    assert shrunk[0, 0, 0, 0] == 0.0 and shrunk[0, 0, 4, 4] == pytest.approx(1.0)  # black outside


# --- pad and crop -----------------------------------------------------------------------------

def test_pad_and_crop_keeps_the_size_and_takes_torch_s_window():
    x = batch(3, h=6, w=10)
    top, left = np.array([0, 2, 4]), np.array([4, 2, 1])

    got, want = both("pad_crop", x, 2, top, left)

    assert got.shape == x.shape and np.array_equal(got, want)
    assert np.array_equal(got[1], x[1])  # the centre window
    assert float(np.abs(got[0, :, :2]).max()) == 0.0  # the padding is black


def test_a_crop_folded_into_the_affine_resampling_takes_the_same_window():
    x = batch(3, h=6, w=10)
    top, left = np.array([0, 2, 4]), np.array([4, 2, 1])

    folded, want = both("affine", x, full(3, 0), full(3, 1), full(3, 0), full(3, 0), read_at=(left - 2, top - 2))

    assert np.allclose(folded, want, atol=TOLERANCE)
    assert np.allclose(folded, np.asarray(augment.pad_crop(jnp.asarray(x), 2, jnp.asarray(top), jnp.asarray(left))),
                       atol=TOLERANCE)


def test_the_crop_augmentation_keeps_the_size_and_moves_whole_pixels():
    x = batch(16, c=1, h=8, w=8)

    out = run(x, crop_padding=2)

    assert out.shape == x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for i in range(len(x)):
        assert any(np.array_equal(out[i, 0], padded[i, 0, t:t + 8, s:s + 8]) for t in range(5) for s in range(5)), i


# --- colour and noise ---------------------------------------------------------------------------

def test_hsv_converts_and_shifts_as_torch_does():
    x = batch(4)
    shifts = (np.array([0.3, -0.2, 0.5, 0.0], np.float32), np.array([0.5, -0.4, 0.0, 1.0], np.float32),
              np.array([-0.3, 0.2, 0.0, 0.1], np.float32))

    got, want = both("hsv_shift", x, *shifts)

    assert np.allclose(got, want, atol=TOLERANCE)
    assert np.allclose(np.asarray(augment.hsv_to_rgb(augment.rgb_to_hsv(jnp.asarray(x)))), x, atol=TOLERANCE)
    assert 0 <= got.min() and got.max() <= 1


def test_hsv_leaves_grayscale_alone_and_keeps_values_in_range():
    grey = batch(8, c=1)
    assert np.array_equal(run(grey, channels=3, hsv={"hue": 0.5, "saturation": 1.0, "value": 1.0}), grey)

    grey_rgb = np.repeat(grey, 3, axis=1)
    assert np.allclose(run(grey_rgb, hsv={"hue": 0.5}), grey_rgb, atol=TOLERANCE)  # no saturation: no hue shows

    pixels = np.round(run(batch(32), hsv={"hue": 0.5, "saturation": 1.0, "value": 1.0}) * 255)
    assert 0 <= pixels.min() and pixels.max() <= 255


def test_noise_has_the_asked_spread():
    x = np.full((64, 1, 16, 16), 0.5, np.float32)

    assert abs(float((run(x, noise_std=0.05) - x).std()) - 0.05) < 0.005


# --- the whole pipeline -------------------------------------------------------------------------

def test_every_operation_at_once_is_reproducible_from_the_key_and_stays_in_range():
    x = batch(16)

    first, again, other = run(x, 7, **EVERYTHING), run(x, 7, **EVERYTHING), run(x, 8, **EVERYTHING)

    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert first.shape == x.shape and 0 <= first.min() and first.max() <= 1
    assert not np.allclose(first, x, atol=0.05)


def test_each_image_draws_its_own_move():
    x = np.repeat(square(), 8, axis=0)

    out = run(x, rotate_degrees=45, translate=0.2, scale=[0.8, 1.2])

    assert len({out[i].tobytes() for i in range(8)}) == 8


def test_the_flip_turn_and_noise_draws_are_what_they_were_before_the_resampling_keys():
    x = batch(8, c=1)
    key = jax.random.key(3)
    mirror, _, turn, noise = jax.random.split(key, 4)
    flipped = np.where(np.asarray(jax.random.bernoulli(mirror, 0.5, (8,)))[:, None, None, None], x[..., ::-1], x)

    assert np.array_equal(run(x, 3, flip="horizontal"), flipped)
    noisy = np.clip(x + 0.1 * np.asarray(jax.random.normal(noise, x.shape)), 0, 1)
    assert np.allclose(run(x, 3, noise_std=0.1), noisy, atol=1e-6)
