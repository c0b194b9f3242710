"""A job's `augmentation` setting: what each key means, its bounds, and its check.

Framework-free, so the web process validates a job's settings without torch; the worker turns a
checked spec into batched tensor operations (training/torch/augment.py). Every key is
optional and off by default; `mean` (what is subtracted from every image, DIGITS' choice) lives
here too because it is part of how a training image is prepared, but unlike the others it also
applies to validation, inference and export.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

FLIPS = ("none", "horizontal", "vertical", "both")
MEANS = ("image", "pixel", "none")
HSV_KEYS = ("hue", "saturation", "value")
MAX_SCALE = 4.0
MAX_PADDING = 64


class AugmentationError(ValueError):
    """A bad augmentation setting; the message starts with the key it is about."""


@dataclass(frozen=True)
class Augmentation:
    """A checked augmentation spec; the defaults change nothing."""

    flip: str = "none"
    rot90: bool = False
    rotate_degrees: float = 0.0
    translate: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    crop_padding: int = 0
    noise_std: float = 0.0
    hsv: tuple[float, float, float] = (0.0, 0.0, 0.0)  # hue, saturation, value
    mean: str = "image"

    @property
    def affine(self) -> bool:
        """Whether rotation, translation or scale is asked: one resampling does all three."""
        return self.rotate_degrees > 0 or self.translate > 0 or self.scale != (1.0, 1.0)

    @property
    def active(self) -> bool:
        """Whether training batches change at all (`mean` is not an augmentation of the batch)."""
        plain = Augmentation(mean=self.mean)
        return self != plain

    def as_dict(self) -> dict[str, Any]:
        """The JSON a job stores and echoes: every key, in its normalised form."""
        data = asdict(self)
        data["scale"] = list(self.scale)
        data["hsv"] = dict(zip(HSV_KEYS, self.hsv))
        return data


def augmentation_parse(raw: object, *, channels: int) -> Augmentation:
    """Check a user's `augmentation` dict for a dataset with `channels`; raise AugmentationError."""
    if raw is None:
        return Augmentation()
    if not isinstance(raw, dict):
        raise AugmentationError("augmentation: give an object such as {\"flip\": \"horizontal\"}.")
    unknown = sorted(set(raw) - set(_PARSERS))
    if unknown:
        raise AugmentationError(f"augmentation.{unknown[0]}: unknown key; use {', '.join(_PARSERS)}.")
    values = {key: _PARSERS[key](raw[key]) for key in _PARSERS if key in raw}
    spec = Augmentation(**values)
    if any(spec.hsv) and channels != 3:
        kind = "grayscale (1 channel)" if channels == 1 else f"not RGB ({channels} channels)"
        raise AugmentationError(f"augmentation.hsv: hsv shifts need a colour dataset; this one is {kind}.")
    return spec


def augmentation_from_stored(data: dict[str, Any] | None) -> Augmentation:
    """A spec from what a job stored (already checked when the job was created)."""
    if not data:
        return Augmentation()
    return augmentation_parse(data, channels=3)


# --- one parser per key -----------------------------------------------------------------------

def _choice(key: str, choices: tuple[str, ...]) -> Any:
    def parse(value: object) -> str:
        if not isinstance(value, str) or value.lower() not in choices:
            raise AugmentationError(f"augmentation.{key}: {value!r} is not one of {', '.join(choices)}.")
        return value.lower()
    return parse


def _number(key: str, low: float, high: float, *, integer: bool = False) -> Any:
    def parse(value: object) -> float:
        return _in_range(f"augmentation.{key}", value, low, high, integer=integer)
    return parse


def _in_range(name: str, value: Any, low: float, high: float, *, integer: bool = False) -> Any:
    refused = AugmentationError(f"{name}: {value!r} must be {'a whole number' if integer else 'a number'} "
                                f"from {low:g} to {high:g}.")
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise refused
    if not math.isfinite(value) or not low <= value <= high:
        raise refused
    return int(value) if integer else float(value)


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise AugmentationError(f"augmentation.rot90: {value!r} must be true or false.")
    return value


def _scale(value: object) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise AugmentationError(f"augmentation.scale: {value!r} must be [low, high], e.g. [0.9, 1.1].")
    low, high = (_in_range("augmentation.scale", v, 1 / MAX_SCALE, MAX_SCALE) for v in value)
    if low > high:
        raise AugmentationError(f"augmentation.scale: low {low:g} is above high {high:g}.")
    return low, high


def _hsv(value: object) -> tuple[float, float, float]:
    if not isinstance(value, dict):
        raise AugmentationError("augmentation.hsv: give {\"hue\": h, \"saturation\": s, \"value\": v}.")
    unknown = sorted(set(value) - set(HSV_KEYS))
    if unknown:
        raise AugmentationError(f"augmentation.hsv.{unknown[0]}: unknown key; use {', '.join(HSV_KEYS)}.")
    bounds = {"hue": 0.5, "saturation": 1.0, "value": 1.0}
    h, s, v = (_in_range(f"augmentation.hsv.{key}", value.get(key, 0.0), 0.0, bounds[key]) for key in HSV_KEYS)
    return h, s, v


_PARSERS: dict[str, Any] = {
    "flip": _choice("flip", FLIPS),
    "rot90": _flag,
    "rotate_degrees": _number("rotate_degrees", 0, 180),
    "translate": _number("translate", 0, 0.5),
    "scale": _scale,
    "crop_padding": _number("crop_padding", 0, MAX_PADDING, integer=True),
    "noise_std": _number("noise_std", 0, 1),
    "hsv": _hsv,
    "mean": _choice("mean", MEANS),
}
