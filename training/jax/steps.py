"""The jitted steps a jax run trains and validates with: pure functions of (weights, batch, step).

A batch is gathered inside the step from the split's arrays on the device (`images[index]`), so a
step is one dispatch. A step's randomness (dropout, augmentation) comes from fold_in(key(seed),
step): the same seed gives the same run, and a resumed run draws what the uninterrupted one drew.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from training.augmentation import Augmentation
from training.jax.augment import prepare
from training.jax.optim import clip_by_norm


@dataclass(frozen=True)
class StepSettings:
    augmentation: Augmentation | None = None
    label_smoothing: float = 0.0
    grad_clip: float = 0.0


def split_model(model: nnx.Module) -> tuple[Any, Any, Any, Any]:
    """(graphdef, params, batch statistics, constants such as an adaptive pool's matrix)."""
    return nnx.split(model, nnx.Param, nnx.BatchStat, ...)  # type: ignore[return-value]


def cross_entropy(logits: jax.Array, labels: jax.Array, smoothing: float = 0.0) -> jax.Array:
    """Per image; PyTorch's label_smoothing: (1 - e) * one-hot + e / classes."""
    targets = jax.nn.one_hot(labels, logits.shape[-1])
    if smoothing:
        targets = optax.smooth_labels(targets, smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def make_steps(graphdef: Any, constants: Any, tx: optax.GradientTransformation, settings: StepSettings,
               seed: int) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    """(train_step, grad_step, apply_step, eval_step).

    train_step(params, stats, opt_state, images, labels, index, mean, lr, step, mult, running)
      -> (params, stats, opt_state, running + this batch's loss)
      one batch and one optimizer step; `mult` (a tree like params, or None) scales each weight's rate
      (pretrained layers' multiplier, 0 while frozen).
    grad_step(params, stats, images, labels, index, mean, step, scale) -> (loss, grads, stats): one
      batch of several accumulated into one optimizer step (loss scaled by `scale` = 1 / group).
    apply_step(params, opt_state, grads, lr, mult) -> (params, opt_state)
    eval_step(params, stats, images, labels, index, valid, mean) -> (loss sum, correct count) over the valid rows.
    """
    base = jax.random.key(seed)

    def loss_fn(params: Any, stats: Any, x: jax.Array, y: jax.Array, key: jax.Array) -> tuple[jax.Array, Any]:
        model = nnx.merge(graphdef, params, stats, constants)
        logits = model(x, True, key)
        return jnp.mean(cross_entropy(logits, y, settings.label_smoothing)), nnx.state(model, nnx.BatchStat)

    def gradients(params: Any, stats: Any, images: jax.Array, labels: jax.Array, index: jax.Array,
                  mean: jax.Array, step: jax.Array, scale: float | jax.Array = 1.0) -> tuple[jax.Array, Any, Any]:
        key = jax.random.fold_in(base, step)
        augment_key, dropout_key = jax.random.split(key)
        x = prepare(images[index], mean, settings.augmentation, augment_key)

        def scaled(p: Any) -> tuple[jax.Array, tuple[jax.Array, Any]]:
            loss, new_stats = loss_fn(p, stats, x, labels[index], dropout_key)
            return loss * scale, (loss, new_stats)

        (_, (loss, stats)), grads = jax.value_and_grad(scaled, has_aux=True)(params)
        return loss, grads, stats

    def apply(params: Any, opt_state: Any, grads: Any, lr: jax.Array, mult: Any) -> tuple[Any, Any]:
        if settings.grad_clip > 0:
            grads = clip_by_norm(grads, settings.grad_clip)
        if mult is not None:  # frozen weights take no gradient
            grads = jax.tree.map(lambda g, m: jnp.where(m > 0, g, 0.0), grads, mult)
        updates, opt_state = tx.update(grads, opt_state, params)
        if mult is None:
            return jax.tree.map(lambda p, u: p - lr * u, params, updates), opt_state
        return jax.tree.map(lambda p, u, m: p - lr * m * u, params, updates, mult), opt_state

    @jax.jit
    def train_step(params: Any, stats: Any, opt_state: Any, images: jax.Array, labels: jax.Array, index: jax.Array,
                   mean: jax.Array, lr: jax.Array, step: jax.Array, mult: Any,
                   running: jax.Array) -> tuple[Any, Any, Any, jax.Array]:
        loss, grads, stats = gradients(params, stats, images, labels, index, mean, step)
        params, opt_state = apply(params, opt_state, grads, lr, mult)
        return params, stats, opt_state, running + loss

    @jax.jit
    def eval_step(params: Any, stats: Any, images: jax.Array, labels: jax.Array, index: jax.Array,
                  valid: jax.Array, mean: jax.Array) -> tuple[jax.Array, jax.Array]:
        model = nnx.merge(graphdef, params, stats, constants)
        logits = model((images[index].astype(jnp.float32) - mean) / 255.0, False, base)
        y = labels[index]
        losses = jnp.where(valid, optax.softmax_cross_entropy_with_integer_labels(logits, y), 0.0)
        return jnp.sum(losses), jnp.sum(jnp.where(valid, jnp.argmax(logits, axis=1) == y, False))

    return train_step, jax.jit(gradients), jax.jit(apply), eval_step
