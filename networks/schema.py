"""The allowlist: the only layer types a spec may use, and the arguments each one takes."""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NUM_CLASSES = "num_classes"
SAME = "same"
# An upsample's size "input": back to the network input's height and width, resolved while planning.
INPUT = "input"
UPSAMPLE_MODES = ("nearest", "bilinear")
# A pool's stride defaults to its kernel size, as in PyTorch; resolved while normalising.
KERNEL_SIZE = "<kernel_size>"

# Upper bounds keep a spec from asking a worker for absurd modules; real networks stay far below.
MAX_COUNT = 65536
MAX_WINDOW = 64
MAX_OUTPUT_SIZE = 1024
MAX_IMAGE_SIZE = 4096  # an upsample's explicit [height, width]


class ArgProblem(Exception):
    """One argument's problem, worded to follow "Layer N (type): "."""


@dataclass(frozen=True)
class Arg:
    kind: str  # a key of _CHECKERS, or "layers" for a block's body (residual, concat_skip)
    required: bool = False
    default: Any = None
    low: float = 0
    high: float = MAX_COUNT
    high_open: bool = False  # dropout's p may not be 1
    choices: tuple[Any, ...] = ()


def _count() -> Arg:
    return Arg("count", required=True, low=1)


def _kernel() -> Arg:
    return Arg("size", required=True, low=1, high=MAX_WINDOW)


def _pool() -> dict[str, Arg]:
    return {
        "kernel_size": _kernel(),
        "stride": Arg("size", default=KERNEL_SIZE, low=1, high=MAX_WINDOW),
        "padding": Arg("size", default=0, low=0, high=MAX_WINDOW),
    }


def _dropout() -> dict[str, Arg]:
    return {"p": Arg("float", default=0.5, low=0, high=1, high_open=True)}


LAYER_TYPES: dict[str, dict[str, Arg]] = {
    "conv2d": {
        "out_channels": _count(),
        "kernel_size": _kernel(),
        "stride": Arg("size", default=1, low=1, high=MAX_WINDOW),
        "padding": Arg("padding", default=0, low=0, high=MAX_WINDOW),
        "bias": Arg("bool", default=True),
        "groups": Arg("int", default=1, low=1),
    },
    "linear": {"out_features": _count(), "bias": Arg("bool", default=True)},
    "relu": {},
    "leaky_relu": {"negative_slope": Arg("float", default=0.01, low=0, high=1)},
    "gelu": {},
    "elu": {"alpha": Arg("float", default=1.0, low=0, high=10)},
    "sigmoid": {},
    "tanh": {},
    "maxpool2d": _pool(),
    "avgpool2d": _pool(),
    "adaptive_avgpool2d": {"output_size": Arg("size", default=1, low=1, high=MAX_OUTPUT_SIZE)},
    "batchnorm2d": {},
    "batchnorm1d": {},
    "dropout": _dropout(),
    "dropout2d": _dropout(),
    "flatten": {},
    "conv_transpose2d": {
        "out_channels": _count(),
        "kernel_size": _kernel(),
        "stride": Arg("size", default=1, low=1, high=MAX_WINDOW),
        "padding": Arg("size", default=0, low=0, high=MAX_WINDOW),
        "output_padding": Arg("size", default=0, low=0, high=MAX_WINDOW),
        "bias": Arg("bool", default=True),
    },
    # Exactly one of scale_factor and size (checked with the combination rules in spec.py).
    "upsample": {
        "scale_factor": Arg("size", low=1, high=MAX_WINDOW),
        "size": Arg("target", low=1, high=MAX_IMAGE_SIZE),
        "mode": Arg("choice", default="nearest", choices=UPSAMPLE_MODES),
    },
    "residual": {
        "layers": Arg("layers", required=True),
        "activation": Arg("choice", default="relu", choices=("relu", None)),
    },
    # Its input and its body's output side by side along channels: a U-Net's skip connection.
    "concat_skip": {"layers": Arg("layers", required=True)},
}


def show(value: object) -> str:
    """A value as the user wrote it (JSON), cut short so a message stays one line."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def is_int(value: object) -> bool:
    # bool is an int subclass in Python, but `true` is never a kernel size.
    return isinstance(value, int) and not isinstance(value, bool)


def _in_range(name: str, arg: Arg, value: float) -> None:
    if arg.high_open and not (arg.low <= value < arg.high):
        raise ArgProblem(
            f"{name} {show(value)} is out of range; it must be at least {arg.low:g} and below {arg.high:g}."
        )
    if not arg.high_open and not (arg.low <= value <= arg.high):
        raise ArgProblem(f"{name} {show(value)} is out of range; it must be between {arg.low:g} and {arg.high:g}.")


def _check_int(name: str, arg: Arg, value: object) -> object:
    if not is_int(value):
        raise ArgProblem(f"{name} must be an integer, not {show(value)}.")
    _in_range(name, arg, value)  # type: ignore[arg-type]
    return value


def _check_count(name: str, arg: Arg, value: object) -> object:
    if value == NUM_CLASSES:
        return value
    if not is_int(value):
        raise ArgProblem(f'{name} must be a positive integer or "num_classes", not {show(value)}.')
    return _check_int(name, arg, value)


def _check_size(name: str, arg: Arg, value: object) -> object:
    if is_int(value):
        return _check_int(name, arg, value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(is_int(v) for v in value):
        return [_check_int(name, arg, v) for v in value]
    raise ArgProblem(f"{name} must be an integer or a [height, width] pair of integers, not {show(value)}.")


def _check_padding(name: str, arg: Arg, value: object) -> object:
    if value == SAME:
        return value
    try:
        return _check_size(name, arg, value)
    except ArgProblem as problem:
        if "out of range" in str(problem):
            raise
        raise ArgProblem(f'{name} must be an integer, a [height, width] pair or "same", not {show(value)}.') from None


def _check_target(name: str, arg: Arg, value: object) -> object:
    if value == INPUT:
        return value
    if is_int(value) or (isinstance(value, (list, tuple)) and len(value) == 2 and all(is_int(v) for v in value)):
        return _check_size(name, arg, value)
    raise ArgProblem(f'{name} must be "input", an integer or a [height, width] pair of integers, not {show(value)}.')


def _check_float(name: str, arg: Arg, value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ArgProblem(f"{name} must be a number, not {show(value)}.")
    _in_range(name, arg, value)
    return float(value)


def _check_bool(name: str, arg: Arg, value: object) -> object:
    if not isinstance(value, bool):
        raise ArgProblem(f"{name} must be true or false, not {show(value)}.")
    return value


def _check_choice(name: str, arg: Arg, value: object) -> object:
    # Compare by type too: 1 == True and 0 == False would otherwise slip through.
    if any(type(value) is type(choice) and value == choice for choice in arg.choices):
        return value
    allowed = " or ".join(show(choice) for choice in arg.choices)
    raise ArgProblem(f"{name} must be {allowed}, not {show(value)}.")


_CHECKERS: dict[str, Callable[[str, Arg, object], object]] = {
    "int": _check_int,
    "count": _check_count,
    "size": _check_size,
    "padding": _check_padding,
    "target": _check_target,
    "float": _check_float,
    "bool": _check_bool,
    "choice": _check_choice,
}


def check_arg(name: str, arg: Arg, value: object) -> object:
    """The normalised value (pairs as lists), or ArgProblem."""
    return _CHECKERS[arg.kind](name, arg, value)
