"""A training batch as the network sees it, on the device, inside the jitted step: mean subtracted,
and augmented as the job asks (flips, quarter turns, noise: the keys JaxBackend.augmentation_keys
names), every image its own draw from the step's key.

As training/torch/augment.py: flips, then the quarter turn (0 or 180 degrees for a non-square
image), then noise, on pixels scaled to 0..1 and clamped back to 0..1, then the mean (/255) subtracted.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from training.augmentation import Augmentation


def prepare(pixels: jax.Array, mean: jax.Array, spec: Augmentation | None, key: jax.Array) -> jax.Array:
    """uint8 (N, C, H, W) -> float32 network input; `spec` None: no augmentation."""
    if spec is None or not spec.active:
        return (pixels.astype(jnp.float32) - mean) / 255.0
    return augment(pixels.astype(jnp.float32) / 255.0, spec, key) - mean / 255.0


def augment(x: jax.Array, spec: Augmentation, key: jax.Array) -> jax.Array:
    n = x.shape[0]
    mirror, upside_down, turn, noise = jax.random.split(key, 4)
    if spec.flip in ("horizontal", "both"):
        x = _where(jax.random.bernoulli(mirror, 0.5, (n,)), x[..., ::-1], x)
    if spec.flip in ("vertical", "both"):
        x = _where(jax.random.bernoulli(upside_down, 0.5, (n,)), x[..., ::-1, :], x)
    if spec.rot90:
        x = _quarter_turns(x, turn)
    if spec.noise_std:
        x = x + spec.noise_std * jax.random.normal(noise, x.shape, x.dtype)
    return jnp.clip(x, 0.0, 1.0)


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
