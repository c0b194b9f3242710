"""The optimizers as the torch backend's settings mean them (training/torch/optim.py), in Optax.

Each transformation stops short of the learning rate: the step multiplies by the rate the schedule
(training.schedules.learning_rate) gives for that step, so one jitted step serves the whole run.
- sgd / nesterov: PyTorch's SGD: the gradient plus weight_decay * w (L2), into a momentum buffer
  that starts at the first gradient (optax.trace starts at zero: the same first value).
- adam: PyTorch's Adam (L2 added to the gradient; eps 1e-8 outside the square root).
- adamw: PyTorch's AdamW: w * (1 - lr * weight_decay), decoupled, and Adam's step.
- rmsprop: PyTorch's RMSprop (alpha 0.99, eps outside the square root), momentum on the scaled step.
"""
from __future__ import annotations

from typing import Any

import jax
import optax

from training.contract import TrainingFailed, TrainingPlan


def make_transform(plan: TrainingPlan) -> optax.GradientTransformation:
    wd, momentum = plan.weight_decay, plan.momentum
    decay = [optax.add_decayed_weights(wd)] if wd else []
    if plan.optimizer in ("sgd", "nesterov"):
        nesterov = plan.optimizer == "nesterov" and momentum > 0
        return optax.chain(*decay, optax.trace(decay=momentum, nesterov=nesterov))
    if plan.optimizer == "adam":
        return optax.chain(*decay, optax.scale_by_adam(eps=1e-8))
    if plan.optimizer == "adamw":
        return optax.chain(optax.scale_by_adam(eps=1e-8), *decay)
    if plan.optimizer == "rmsprop":
        rms = optax.scale_by_rms(decay=0.99, eps=1e-8, eps_in_sqrt=False)
        return optax.chain(*decay, rms, *([optax.trace(decay=momentum)] if momentum else []))
    raise TrainingFailed(f"Unknown optimizer '{plan.optimizer}'.")


def clip_by_norm(grads: Any, max_norm: float) -> Any:
    """PyTorch's clip_grad_norm_: scaled by max_norm / (norm + 1e-6) where that is below 1."""
    norm = optax.tree.norm(grads)
    scale = jax.numpy.minimum(1.0, max_norm / (norm + 1e-6))
    return jax.tree.map(lambda g: g * scale, grads)
