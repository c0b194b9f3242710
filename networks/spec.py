"""Network specs: validation, shape inference and the summary table. Pure Python, no torch.

A spec is `{"layers": [{"type": "conv2d", "out_channels": 20, "kernel_size": 5}, ...]}`.
Input channels and features are inferred from the dataset's (C, H, W), and "num_classes" may
stand for any count, so one spec fits every dataset (and an upsample's size "input" for the
input's height and width). Layer paths are the JSON array indexes
("3", and "5.layers.2" inside a residual or concat_skip block), the same as the built model's submodule names.
"""
from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from networks.errors import SpecError, Where
from networks.schema import KERNEL_SIZE, LAYER_TYPES, SAME, ArgProblem, check_arg, is_int, show
from networks.shapes import PlannedLayer, Shape, plan_layers

__all__ = [
    "HEAD_TASKS", "LayerRow", "NetworkSummary", "PlannedLayer", "SpecError",
    "check_head", "head_tasks", "parse_spec_text", "plan_network", "summarize", "validate_spec",
]

MAX_LAYERS = 200  # nested layers included
MAX_NESTING = 4  # residual blocks inside residual blocks
MAX_PARAMS = 500_000_000  # a worker cannot hold much more; real networks stay far below
MAX_SPEC_CHARS = 200_000


@dataclass(frozen=True)
class LayerRow:
    path: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    depth: int


@dataclass(frozen=True)
class NetworkSummary:
    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    output_shape: tuple[int, ...]


# --- structure ----------------------------------------------------------------------------------

def validate_spec(spec: object) -> dict[str, Any]:
    """Check the spec's structure; return a normalised deep copy with every default filled in."""
    if not isinstance(spec, dict):
        raise SpecError(f'A network spec must be a JSON object with a "layers" list, not {show(spec)}.')
    extra = sorted(str(key) for key in spec if key != "layers")
    if extra:
        raise SpecError(f'Unknown key "{extra[0]}" in the network spec; only "layers" is allowed.')
    if "layers" not in spec:
        raise SpecError('The network spec has no "layers" list.')
    layers = spec["layers"]
    if not isinstance(layers, list) or not layers:
        raise SpecError('The network spec\'s "layers" must be a non-empty list of layers.')
    return {"layers": _validate_layers(layers, prefix="", depth=0, seen=[0])}


def _validate_layers(layers: list[Any], *, prefix: str, depth: int, seen: list[int]) -> list[dict[str, Any]]:
    normalised = []
    for index, layer in enumerate(layers):
        path = f"{prefix}{index}"
        seen[0] += 1
        normalised.append(_validate_layer(layer, path=path, depth=depth, seen=seen))
    return normalised


def _validate_layer(layer: object, *, path: str, depth: int, seen: list[int]) -> dict[str, Any]:
    if not isinstance(layer, dict):
        raise Where(path).error(f'a layer must be an object with a "type", not {show(layer)}.')
    layer_type = _layer_type(layer, Where(path))
    where = Where(path, layer_type)
    if seen[0] > MAX_LAYERS:
        raise where.error(f"the network has more than {MAX_LAYERS} layers (nested ones included).")
    schema = LAYER_TYPES[layer_type]
    unknown = sorted(str(key) for key in layer if key != "type" and key not in schema)
    if unknown:
        allowed = ", ".join(schema) or "none"
        raise where.error(f'unknown argument "{unknown[0]}" (allowed: {allowed}).')
    normalised = {"type": layer_type, **_validate_args(layer, where=where, depth=depth, seen=seen)}
    _check_combination(where, normalised)
    return normalised


def _validate_args(layer: dict[str, Any], *, where: Where, depth: int, seen: list[int]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for name, arg in LAYER_TYPES[str(where.type)].items():
        if arg.kind == "layers":
            args[name] = _validate_body(layer.get(name), where=where, depth=depth, seen=seen)
        elif name in layer and not _left_out(arg, layer[name]):
            args[name] = _checked(where, name, arg, layer[name])
        elif arg.required:
            raise where.error(f"the required argument {name} is missing.")
        else:
            default = args["kernel_size"] if arg.default == KERNEL_SIZE else arg.default
            args[name] = copy.copy(default)  # a [h, w] stride must not alias the kernel_size list
    return args


def _left_out(arg: Any, value: object) -> bool:
    # An optional argument without a default (an upsample's scale_factor or size) is null when not
    # given, so a normalised spec validates again as it is.
    return value is None and arg.default is None and not arg.required


def _layer_type(layer: dict[str, Any], where: Where) -> str:
    layer_type = layer.get("type")
    if not isinstance(layer_type, str):
        raise where.error(f'"type" must be a string naming a layer type, not {show(layer_type)}.')
    if layer_type not in LAYER_TYPES:
        close = difflib.get_close_matches(layer_type.lower(), LAYER_TYPES, n=1)
        hint = f' Did you mean "{close[0]}"?' if close else f" Allowed types: {', '.join(LAYER_TYPES)}."
        raise Where(where.path, layer_type[:40]).error(f'unknown layer type "{layer_type[:40]}".{hint}')
    return layer_type


def _checked(where: Where, name: str, arg: Any, value: object) -> object:
    try:
        return check_arg(name, arg, value)
    except ArgProblem as problem:
        raise where.error(str(problem)) from None


def _validate_body(body: object, *, where: Where, depth: int, seen: list[int]) -> list[dict[str, Any]]:
    if not isinstance(body, list) or not body:
        raise where.error('"layers" must be a non-empty list of layers (the block\'s body).')
    if depth + 1 > MAX_NESTING:
        raise where.error(f"{where.type} blocks are nested more than {MAX_NESTING} levels deep.")
    return _validate_layers(body, prefix=f"{where.path}.layers.", depth=depth + 1, seen=seen)


def _check_combination(where: Where, layer: dict[str, Any]) -> None:
    """Rules that tie two arguments together, which PyTorch would only reject at build time."""
    if layer["type"] == "conv2d" and layer["padding"] == SAME and _pair(layer["stride"]) != (1, 1):
        raise where.error(f'padding "same" needs stride 1, not {show(layer["stride"])}.')
    if layer["type"] == "upsample" and (layer["scale_factor"] is None) == (layer["size"] is None):
        raise where.error('give exactly one of scale_factor and size (e.g. "scale_factor": 2 or "size": "input").')
    if layer["type"] == "conv_transpose2d":
        for extra, stride in zip(_pair(layer["output_padding"]), _pair(layer["stride"])):
            if extra >= stride:
                raise where.error(
                    f"output_padding {show(layer['output_padding'])} must be smaller than stride {show(layer['stride'])}."
                )
    if layer["type"] in ("maxpool2d", "avgpool2d"):
        for pad, kernel in zip(_pair(layer["padding"]), _pair(layer["kernel_size"])):
            if pad > kernel // 2:
                raise where.error(
                    f"padding {show(layer['padding'])} is more than half of kernel_size {show(layer['kernel_size'])}."
                )


def _pair(value: int | list[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


# --- JSON text ----------------------------------------------------------------------------------

def parse_spec_text(text: str) -> dict[str, Any]:
    """JSON text (a form field, an upload) → a validated, normalised spec."""
    if len(text) > MAX_SPEC_CHARS:
        raise SpecError(f"The network spec is {len(text)} characters long; the limit is {MAX_SPEC_CHARS}.")
    try:
        data = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise SpecError(f"The network spec is not valid JSON: {exc.msg} at {where}.") from None
    except RecursionError:
        raise SpecError("The network spec is nested too deeply to read.") from None
    return validate_spec(data)


def _reject_constant(name: str) -> object:
    raise SpecError(f"The network spec is not valid JSON: {name} is not a number JSON allows.")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A repeated key silently keeps the last value in json.loads; a typo deserves a message.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise SpecError(f'The network spec repeats the key "{key}" in one object.')
        result[key] = value
    return result


# --- shapes and the summary ---------------------------------------------------------------------

def plan_network(
    spec: object, input_shape: tuple[int, int, int], num_classes: int, task: str | None = None
) -> list[PlannedLayer]:
    """Validate the spec and resolve every layer's input/output shape and parameter count.

    The torch builder works from this plan, so the summary and the built model cannot disagree.
    The network must end in `task`'s head (HEAD_TASKS); with no task, in any one of them.
    """
    shape = _input_shape(input_shape)
    if not is_int(num_classes) or num_classes < 1:
        raise SpecError(f"num_classes must be a positive integer, not {show(num_classes)}.")
    if task is not None and task not in HEAD_TASKS:
        raise ValueError(f"No head rule for the task {task!r}; known: {', '.join(HEAD_TASKS)}.")
    plan = plan_layers(validate_spec(spec)["layers"], shape, num_classes, prefix="", depth=0)
    _check_params(plan)
    _check_head(plan[-1], shape, num_classes, task)
    return plan


def check_head(spec: object, input_shape: tuple[int, int, int], num_classes: int, task: str) -> None:
    """SpecError unless the spec fits this input and ends in `task`'s head: one score per class
    (classification) or one score per class for each pixel of the input (segmentation)."""
    plan_network(spec, input_shape, num_classes, task)


def head_tasks(spec: object) -> tuple[str, ...]:
    """The tasks whose head a spec can end in, by its structure alone, for any input.

    Residual and concat_skip bodies cannot end flat, so a spec ends flat exactly when one of its
    top-level layers flattens: one score per class. Otherwise it ends image-shaped: per pixel.
    Whether it is valid at all is plan_network's to say; this only reads the layer types.
    """
    layers = spec.get("layers") if isinstance(spec, dict) else None
    flat = isinstance(layers, list) and any(isinstance(layer, dict) and layer.get("type") == "flatten"
                                            for layer in layers)
    return ("classification",) if flat else ("segmentation",)
def _input_shape(input_shape: object) -> Shape:
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or not all(is_int(size) and size >= 1 for size in input_shape)
    ):
        raise SpecError(
            f"The input shape must be (channels, height, width) of positive integers, not {show(input_shape)}."
        )
    return tuple(input_shape)


def _check_params(plan: list[PlannedLayer]) -> None:
    total = 0
    for layer in plan:
        total += layer.params
        if total > MAX_PARAMS:
            raise Where(layer.path, layer.type).error(
                f"the network reaches {total:,} parameters here; the limit is {MAX_PARAMS:,}."
            )


def _check_head(last: PlannedLayer, input_shape: Shape, num_classes: int, task: str | None) -> None:
    tasks = HEAD_TASKS if task is None else (task,)
    if any(HEAD_TASKS[name](last.output_shape, input_shape, num_classes) for name in tasks):
        return
    problem = _head_problem(last.output_shape, input_shape, num_classes, task)
    raise Where(last.path, last.type).error(problem)


def _head_problem(output: Shape, input_shape: Shape, num_classes: int, task: str | None) -> str:
    pixels = f"{num_classes}x{input_shape[1]}x{input_shape[2]}"
    ends = f"the network ends with output {_format_shape(output)} but must end with"
    if task == "detection":
        cells = f"{num_classes}x{_quarter(input_shape[1])}x{_quarter(input_shape[2])}"
        return (
            f"{ends} {cells}, the detection head (a heatmap per class, box width and height, centre offset) "
            f"on each cell of a quarter of the {input_shape[1]}x{input_shape[2]} input; detection takes its built-in "
            "network (centernet), not a custom one."
        )
    if task == "segmentation":
        return (
            f"{ends} {pixels}, one score per class for each pixel of the {input_shape[1]}x{input_shape[2]} input; "
            'end with a conv2d with out_channels "num_classes" at the input\'s height and width '
            '(an upsample with "size": "input" brings it back).'
        )
    classification = (
        f"{ends} [{num_classes}], one score per class; "
        'end with a flatten and a linear layer with out_features "num_classes".'
    )
    if task is None and len(output) == 3:
        return f"{classification} (Or, for segmentation, with {pixels}: one score per class for each pixel.)"
    return classification


def _one_score_per_class(output: Shape, input_shape: Shape, num_classes: int) -> bool:
    return output == (num_classes,)


def _one_score_per_class_and_pixel(output: Shape, input_shape: Shape, num_classes: int) -> bool:
    return output == (num_classes, input_shape[1], input_shape[2])


def _quarter(size: int) -> int:
    return -(-size // 4)  # a stride-4 map of any size: ResNet's stem rounds each halving up


def _detection_head_per_cell(output: Shape, input_shape: Shape, num_classes: int) -> bool:
    return output == (num_classes, _quarter(input_shape[1]), _quarter(input_shape[2]))


# The head each task's networks end in (training.vision_tasks names the tasks).
HEAD_TASKS: dict[str, Callable[[Shape, Shape, int], bool]] = {
    "classification": _one_score_per_class,
    "segmentation": _one_score_per_class_and_pixel,
    "detection": _detection_head_per_cell,  # num_classes here is the task's outputs: classes + 4
}


def _format_shape(shape: Shape) -> str:
    return f"[{shape[0]}]" if len(shape) == 1 else "x".join(str(size) for size in shape)


def summarize(
    spec: object, input_shape: tuple[int, int, int], num_classes: int, task: str | None = None
) -> NetworkSummary:
    """The summary table for a spec on a dataset's input shape; raises SpecError if it won't work."""
    plan = plan_network(spec, input_shape, num_classes, task)
    total = sum(layer.params for layer in plan)
    # Every parameter the builder makes is trainable; the field exists so frozen layers can come.
    return NetworkSummary(
        rows=list(_rows(plan)), total_params=total, trainable_params=total, output_shape=plan[-1].output_shape
    )


def _rows(plan: Sequence[PlannedLayer]) -> Iterator[LayerRow]:
    for layer in plan:
        yield LayerRow(layer.path, layer.type, layer.output_shape, layer.params, layer.depth)
        yield from _rows(layer.body)
