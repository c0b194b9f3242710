"""A job's augmentation and solver extras as the short lines its page shows (only what is on)."""
from __future__ import annotations

from typing import Any

from django import template

from jobs.models import TrainingJob
from training.augmentation import Augmentation, augmentation_from_stored

register = template.Library()

FLIP_WORDS = {"horizontal": "left-right flips", "vertical": "top-bottom flips", "both": "left-right and top-bottom flips"}
MEAN_WORDS = {"image": "the mean image", "pixel": "the mean of each channel", "none": "nothing"}


@register.filter
def augmentation_line(stored: dict[str, Any] | None) -> str:
    """E.g. "left-right flips · rotate ±15° · noise σ 0.05", or "none"."""
    spec = augmentation_from_stored(stored)
    return " · ".join(_augmentation_parts(spec)) or "none"


@register.filter
def mean_line(stored: dict[str, Any] | None) -> str:
    return MEAN_WORDS[augmentation_from_stored(stored).mean]


@register.filter
def solver_extras_line(job: TrainingJob) -> str:
    """E.g. "accumulate 4 batches per step · label smoothing 0.1", or "" when all are off."""
    parts = [f"accumulate {job.accumulate} batches per step" if job.accumulate > 1 else "",
             f"clip the gradient norm at {job.grad_clip:g}" if job.grad_clip else "",
             f"label smoothing {job.label_smoothing:g}" if job.label_smoothing else ""]
    return " · ".join(p for p in parts if p)


def _augmentation_parts(s: Augmentation) -> list[str]:
    low, high = s.scale
    colour = [f"{word} ±{amount:g}" for word, amount in zip(("hue", "saturation", "brightness"), s.hsv) if amount]
    parts = [FLIP_WORDS.get(s.flip, ""), "quarter turns" if s.rot90 else "",
             f"rotate ±{s.rotate_degrees:g}°" if s.rotate_degrees else "",
             f"shift ±{s.translate:g}" if s.translate else "",
             f"scale {low:g}–{high:g}" if (low, high) != (1.0, 1.0) else "",
             f"pad and crop {s.crop_padding} px" if s.crop_padding else "",
             f"noise σ {s.noise_std:g}" if s.noise_std else "",
             ", ".join(colour)]
    return [p for p in parts if p]
