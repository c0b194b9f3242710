"""A training batch as the network sees it, on the device, inside the jitted step: mean subtracted,
and augmented as the job asks, every image its own draw from the step's key.

The operations and their order are training/torch/augment.py's: flips, the quarter turn (0 or 180
degrees for a non-square image), one affine resampling (rotation, translation, scale; bilinear,
black outside) with pad-and-crop folded in as a whole-pixel move when it runs (else the exact crop,
black padding), HSV shifts (3-channel images only), then noise; on pixels scaled to 0..1 and
clamped back to 0..1, then the mean (/255) subtracted. The draws are jax's, not torch's generator's:
the same meaning, not the same numbers.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from training.augmentation import Augmentation


def prepare(pixels: jax.Array, mean: jax.Array, spec: Augmentation | None, key: jax.Array) -> jax.Array:
    """uint8 (N, C, H, W) -> float32 network input; `spec` None: no augmentation."""
    if spec is None or not spec.active:
        return (pixels.astype(jnp.float32) - mean) / 255.0
    return augment(pixels.astype(jnp.float32) / 255.0, spec, key) - mean / 255.0


def augment(x: jax.Array, spec: Augmentation, key: jax.Array) -> jax.Array:
    """The batch x (float, 0..1) changed as `spec` says, clamped to 0..1."""
    n = x.shape[0]
    mirror, upside_down, turn, noise = jax.random.split(key, 4)
    # The later keys come from a key of their own, so the flip, turn and noise draws stay what they
    # were before the other operations existed (a job queued then resumes to the same weights).
    crop, warp, colour = jax.random.split(jax.random.fold_in(key, 1), 3)
    if spec.flip in ("horizontal", "both"):
        x = _where(jax.random.bernoulli(mirror, 0.5, (n,)), x[..., ::-1], x)
    if spec.flip in ("vertical", "both"):
        x = _where(jax.random.bernoulli(upside_down, 0.5, (n,)), x[..., ::-1, :], x)
    if spec.rot90:
        x = _quarter_turns(x, turn)
    offsets = jax.random.randint(crop, (2, n), 0, 2 * spec.crop_padding + 1) if spec.crop_padding else None
    if offsets is not None and not spec.affine:
        x = pad_crop(x, spec.crop_padding, offsets[0], offsets[1])
    if spec.affine:
        read_at = None if offsets is None else (offsets[1] - spec.crop_padding, offsets[0] - spec.crop_padding)
        x = affine(x, *_affine_draws(spec, warp, n), read_at=read_at)
    if any(spec.hsv) and x.shape[1] == 3:
        x = hsv_shift(x, *_uniform(colour, (3, n), jnp.asarray(spec.hsv).reshape(3, 1)))
    if spec.noise_std:
        x = x + spec.noise_std * jax.random.normal(noise, x.shape, x.dtype)
    return jnp.clip(x, 0.0, 1.0)


def _affine_draws(spec: Augmentation, key: jax.Array, n: int) -> tuple[jax.Array, ...]:
    """(degrees, scale, shift_x, shift_y) per image, as torch's Augmenter draws them (uniform in their ranges)."""
    degrees, scale, shift_x, shift_y = jax.random.split(key, 4)
    low, high = spec.scale
    return (_uniform(degrees, (n,), spec.rotate_degrees), jax.random.uniform(scale, (n,), minval=low, maxval=high),
            _uniform(shift_x, (n,), spec.translate), _uniform(shift_y, (n,), spec.translate))


def _uniform(key: jax.Array, shape: tuple[int, ...], amount: float | jax.Array) -> jax.Array:
    """Uniform in -amount..amount."""
    return amount * jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)


def _where(which: jax.Array, moved: jax.Array, x: jax.Array) -> jax.Array:
    return jnp.where(which[:, None, None, None], moved, x)


def _quarter_turns(x: jax.Array, key: jax.Array) -> jax.Array:
    """Image i turned k[i] quarter turns, as torch.rot90(x[i], k[i], (1, 2)) (numpy's direction)."""
    square = x.shape[2] == x.shape[3]
    k = jax.random.randint(key, (x.shape[0],), 0, 4 if square else 2) * (1 if square else 2)
    out = x
    for turns in ((1, 2, 3) if square else (2,)):
        out = _where(k == turns, jnp.rot90(x, turns, axes=(2, 3)), out)
    return out


def pad_crop(x: jax.Array, padding: int, top: jax.Array, left: jax.Array) -> jax.Array:
    """Every image padded with `padding` black pixels, then an H x W window taken back from
    (top[i], left[i]) of the padded image i (torch's pad_crop)."""
    _, c, h, w = x.shape
    p = padding
    padded = jnp.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    window = jax.vmap(lambda image, t, s: jax.lax.dynamic_slice(image, (0, t, s), (c, h, w)))
    return window(padded, top, left)


def affine(x: jax.Array, degrees: jax.Array, scale: jax.Array, shift_x: jax.Array, shift_y: jax.Array,
           read_at: tuple[jax.Array, jax.Array] | None = None) -> jax.Array:
    """Each image rotated by degrees[i], scaled by scale[i] (above 1 zooms in) and moved by
    shift_x[i], shift_y[i] (fractions of its width and height), in one bilinear resampling, black
    outside; `read_at` (dx, dy) then has output pixel (r, c) read what would have been at
    (r + dy, c + dx). torch's `affine` (F.grid_sample, align_corners=False, zeros) on the same numbers."""
    _, _, h, w = x.shape
    angle = degrees * (math.pi / 180)
    cos, sin = jnp.cos(angle) / scale, jnp.sin(angle) / scale
    # In -1..1 coordinates on both axes, as torch's affine_theta: the off-diagonal carries the aspect ratio.
    a, b, c, d = cos, -sin * (h / w), sin * (w / h), cos
    tx, ty = -2 * shift_x, -2 * shift_y
    if read_at is not None:
        dx, dy = read_at[0] * (2 / w), read_at[1] * (2 / h)
        tx, ty = tx + a * dx + b * dy, ty + c * dx + d * dy
    us = ((jnp.arange(w, dtype=x.dtype) * 2 + 1) / w - 1).reshape(1, 1, w)
    vs = ((jnp.arange(h, dtype=x.dtype) * 2 + 1) / h - 1).reshape(1, h, 1)
    a, b, c, d, tx, ty = (t.astype(x.dtype).reshape(-1, 1, 1) for t in (a, b, c, d, tx, ty))
    grid_x, grid_y = a * us + b * vs + tx, c * us + d * vs + ty
    # grid_sample's unnormalisation (align_corners=False): -1 is the left edge of pixel 0.
    return bilinear(x, ((grid_x + 1) * w - 1) / 2, ((grid_y + 1) * h - 1) / 2)


def bilinear(x: jax.Array, cols: jax.Array, rows: jax.Array) -> jax.Array:
    """x (N, C, H, W) read at the (N, H', W') pixel positions (rows, cols), bilinear; each of the
    four neighbours outside the image counts as 0 (grid_sample's padding_mode="zeros")."""
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w)
    left, top = jnp.floor(cols), jnp.floor(rows)
    out = jnp.zeros((n, c, *rows.shape[1:]), x.dtype)
    for row, row_weight in ((top, top + 1 - rows), (top + 1, rows - top)):
        for col, col_weight in ((left, left + 1 - cols), (left + 1, cols - left)):
            inside = (row >= 0) & (row <= h - 1) & (col >= 0) & (col <= w - 1)
            index = (jnp.clip(row, 0, h - 1) * w + jnp.clip(col, 0, w - 1)).astype(jnp.int32).reshape(n, 1, -1)
            taps = jnp.take_along_axis(flat, jnp.broadcast_to(index, (n, c, index.shape[2])), axis=2)
            weight = jnp.where(inside, row_weight * col_weight, 0.0).reshape(n, 1, -1)
            out = out + (taps * weight).reshape(out.shape)
    return out


def rgb_to_hsv(x: jax.Array) -> jax.Array:
    """(N, 3, H, W) RGB in 0..1 to HSV in 0..1 (hue a fraction of the circle), as torch's rgb_to_hsv."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    high, low = x.max(axis=1), x.min(axis=1)
    delta = high - low
    red, green = high == r, high == g
    part = jnp.where(red, g - b, jnp.where(green, b - r, r - g)) / jnp.maximum(delta, 1e-12)
    sector = jnp.where(red, 0.0, jnp.where(green, 2.0, 4.0))
    hue = jnp.remainder((part + sector) / 6, 1.0)
    return jnp.stack([hue, delta / jnp.maximum(high, 1e-12), high], 1)


def hsv_to_rgb(x: jax.Array) -> jax.Array:
    hue, saturation, value = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    # torch's closed form: channel n (red 5, green 3, blue 1) is v - v s clamp(min(k, 4 - k), 0, 1).
    k = jnp.remainder(jnp.array([5.0, 3.0, 1.0], x.dtype).reshape(1, 3, 1, 1) + hue * 6, 6)
    return value - value * saturation * jnp.clip(jnp.minimum(k, 4 - k), 0, 1)


def hsv_shift(x: jax.Array, hue: jax.Array, saturation: jax.Array, value: jax.Array) -> jax.Array:
    """Image i's hue turned by hue[i] (a fraction of the circle), its saturation and value moved by
    saturation[i] and value[i] (fractions of their range, clamped to it)."""
    hsv = rgb_to_hsv(x)
    h = jnp.remainder(hsv[:, 0] + hue.reshape(-1, 1, 1), 1.0)
    s = jnp.clip(hsv[:, 1] + saturation.reshape(-1, 1, 1), 0, 1)
    v = jnp.clip(hsv[:, 2] + value.reshape(-1, 1, 1), 0, 1)
    return hsv_to_rgb(jnp.stack([h, s, v], 1))
