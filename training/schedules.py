"""Learning-rate policies as plain functions of the (fractional) epoch, so they are easy to test."""
from __future__ import annotations

import math
from typing import Any

LR_POLICIES = ("fixed", "step", "multistep", "exp", "cosine")
OPTIMIZERS = ("sgd", "nesterov", "adam", "adamw", "rmsprop")


def learning_rate(policy: str, base_lr: float, epoch: float, total_epochs: int, params: dict[str, Any]) -> float:
    gamma = float(params.get("gamma", 0.1))
    if policy == "fixed":
        return base_lr
    if policy == "step":
        return base_lr * gamma ** math.floor(epoch / float(params.get("step_size", 1.0)))
    if policy == "multistep":
        passed = sum(1 for milestone in params.get("milestones", []) if epoch >= milestone)
        return base_lr * gamma**passed
    if policy == "exp":
        return base_lr * gamma**epoch
    if policy == "cosine":
        return 0.5 * base_lr * (1 + math.cos(math.pi * min(epoch / max(total_epochs, 1), 1.0)))
    raise ValueError(f"unknown learning-rate policy {policy!r}")


def learning_rate_curve(policy: str, base_lr: float, total_epochs: int, params: dict[str, Any],
                        count: int = 300) -> list[list[float]]:
    """`count` [epoch, rate] pairs evenly over the run, from learning_rate() itself (the job form's preview)."""
    epochs = [round(total_epochs * i / (count - 1), 6) for i in range(count)]
    return [[epoch, learning_rate(policy, base_lr, epoch, total_epochs, params)] for epoch in epochs]
