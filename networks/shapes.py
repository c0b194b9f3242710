"""Shape propagation: each layer's output shape and parameter count, exactly as PyTorch makes them."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from networks.errors import Where
from networks.schema import INPUT, NUM_CLASSES, SAME

Shape = tuple[int, ...]

# Activations per image; beyond this one batch would not fit a worker's memory.
MAX_VALUES = 50_000_000


@dataclass(frozen=True)
class PlannedLayer:
    path: str
    type: str
    args: dict[str, Any]  # normalised, with "num_classes" replaced by the count
    input_shape: Shape
    output_shape: Shape
    params: int  # a block's (residual, concat_skip) include its body's, and a residual's projection
    depth: int
    body: tuple[PlannedLayer, ...] = ()
    # Residual only: None for an identity shortcut, else the 1x1 projection's (stride_h, stride_w).
    shortcut_stride: tuple[int, int] | None = None


@dataclass(frozen=True)
class Network:
    """What every layer may refer to: the class count and the network input's height and width."""

    num_classes: int
    input_size: tuple[int, int]


def plan_layers(
    layers: list[dict[str, Any]], shape: Shape, num_classes: int | Network, *, prefix: str, depth: int
) -> list[PlannedLayer]:
    # The top-level call passes the class count; the network input is then this first shape.
    network = num_classes if isinstance(num_classes, Network) else Network(num_classes, (shape[1], shape[2]))
    plan = []
    for index, layer in enumerate(layers):
        planned = _plan_one(layer, f"{prefix}{index}", shape, network, depth)
        plan.append(planned)
        shape = planned.output_shape
    return plan


def _plan_one(layer: dict[str, Any], path: str, shape: Shape, network: Network, depth: int) -> PlannedLayer:
    where = Where(path, layer["type"])
    args = {name: _resolved(value, network) for name, value in layer.items() if name != "type"}
    if layer["type"] in _BLOCKS:
        return _BLOCKS[layer["type"]](args, where, shape, network, depth)
    output, params = _SHAPERS[layer["type"]](args, shape, where)
    _check_size(output, where)
    return PlannedLayer(path, layer["type"], args, shape, output, params, depth)


def _resolved(value: object, network: Network) -> object:
    if value == NUM_CLASSES:
        return network.num_classes
    if value == INPUT:
        return list(network.input_size)
    return value


def _check_size(shape: Shape, where: Where) -> None:
    values = math.prod(shape)
    if values > MAX_VALUES:
        raise where.error(f"its output {_show(shape)} holds {values:,} values per image; the limit is {MAX_VALUES:,}.")


def _show(shape: Shape) -> str:
    return f"[{shape[0]}]" if len(shape) == 1 else "x".join(str(size) for size in shape)


def _pair(value: int | list[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def _show_pair(value: int | list[int]) -> str:
    return str(value) if isinstance(value, int) else f"{value[0]}x{value[1]}"


def _image(shape: Shape, where: Where) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise where.error(
            f"expects an image-shaped input (channels x height x width) but gets a flat {_show(shape)}; "
            "move it before the flatten layer."
        )
    return shape[0], shape[1], shape[2]


def _flat(shape: Shape, where: Where) -> int:
    if len(shape) != 1:
        raise where.error(f'expects a flat input but gets {_show(shape)}; add a {{"type": "flatten"}} layer before it.')
    return shape[0]


def _windowed(args: dict[str, Any], shape: Shape, where: Where) -> tuple[int, int]:
    """Output height and width of a sliding window (convolution or pooling), as PyTorch floors them."""
    _, height, width = _image(shape, where)
    if args["padding"] == SAME:
        return height, width
    sizes = []
    for size, kernel, stride, pad in zip(
        (height, width), _pair(args["kernel_size"]), _pair(args["stride"]), _pair(args["padding"])
    ):
        if kernel > size + 2 * pad:
            padded = f" padded by {_show_pair(args['padding'])}" if _pair(args["padding"]) != (0, 0) else ""
            raise where.error(
                f"kernel_size {_show_pair(args['kernel_size'])} is larger than its {height}x{width} input{padded}."
            )
        sizes.append((size + 2 * pad - kernel) // stride + 1)
    return sizes[0], sizes[1]


def _conv2d(args: dict[str, Any], shape: Shape, where: Where) -> tuple[Shape, int]:
    height, width = _windowed(args, shape, where)
    in_channels, out_channels, groups = shape[0], args["out_channels"], args["groups"]
    if in_channels % groups or out_channels % groups:
        raise where.error(
            f"groups {groups} must divide both its {in_channels} input channels and its {out_channels} output channels."
        )
    kernel_h, kernel_w = _pair(args["kernel_size"])
    params = out_channels * (in_channels // groups) * kernel_h * kernel_w + (out_channels if args["bias"] else 0)
    return (out_channels, height, width), params


def _conv_transpose2d(args: dict[str, Any], shape: Shape, where: Where) -> tuple[Shape, int]:
    in_channels, height, width = _image(shape, where)
    sizes = []
    for size, kernel, stride, pad, extra in zip(
        (height, width), _pair(args["kernel_size"]), _pair(args["stride"]), _pair(args["padding"]),
        _pair(args["output_padding"]),
    ):
        sizes.append((size - 1) * stride - 2 * pad + kernel + extra)
    if min(sizes) < 1:
        raise where.error(
            f"padding {_show_pair(args['padding'])} leaves no output of its {height}x{width} input "
            f"(it would be {sizes[0]}x{sizes[1]})."
        )
    kernel_h, kernel_w = _pair(args["kernel_size"])
    out_channels = args["out_channels"]
    params = in_channels * out_channels * kernel_h * kernel_w + (out_channels if args["bias"] else 0)
    return (out_channels, sizes[0], sizes[1]), params


def _upsample(args: dict[str, Any], shape: Shape, where: Where) -> tuple[Shape, int]:
    channels, height, width = _image(shape, where)
    if args["size"] is not None:
        return (channels, *_pair(args["size"])), 0
    scale_h, scale_w = _pair(args["scale_factor"])
    return (channels, height * scale_h, width * scale_w), 0


def _pool2d(args: dict[str, Any], shape: Shape, where: Where) -> tuple[Shape, int]:
    height, width = _windowed(args, shape, where)
    return (shape[0], height, width), 0


def _adaptive_pool2d(args: dict[str, Any], shape: Shape, where: Where) -> tuple[Shape, int]:
    channels, _, _ = _image(shape, where)
    return (channels, *_pair(args["output_size"])), 0


def _linear(args: dict[str, Any], shape: Shape, where: Where) -> tuple[Shape, int]:
    features, out = _flat(shape, where), args["out_features"]
    return (out,), features * out + (out if args["bias"] else 0)


def _batchnorm2d(args: dict[str, Any], shape: Shape, where: Where) -> tuple[Shape, int]:
    return shape, 2 * _image(shape, where)[0]  # weight and bias; running stats are buffers


def _batchnorm1d(args: dict[str, Any], shape: Shape, where: Where) -> tuple[Shape, int]:
    return shape, 2 * _flat(shape, where)


def _dropout2d(args: dict[str, Any], shape: Shape, where: Where) -> tuple[Shape, int]:
    _image(shape, where)  # it drops whole channels, which a flat input does not have
    return shape, 0


def _flatten(args: dict[str, Any], shape: Shape, where: Where) -> tuple[Shape, int]:
    return (math.prod(shape),), 0


def _unchanged(args: dict[str, Any], shape: Shape, where: Where) -> tuple[Shape, int]:
    return shape, 0


_SHAPERS: dict[str, Callable[[dict[str, Any], Shape, Where], tuple[Shape, int]]] = {
    "conv2d": _conv2d,
    "conv_transpose2d": _conv_transpose2d,
    "upsample": _upsample,
    "linear": _linear,
    "maxpool2d": _pool2d,
    "avgpool2d": _pool2d,
    "adaptive_avgpool2d": _adaptive_pool2d,
    "batchnorm2d": _batchnorm2d,
    "batchnorm1d": _batchnorm1d,
    "dropout2d": _dropout2d,
    "flatten": _flatten,
    **{name: _unchanged for name in ("relu", "leaky_relu", "gelu", "elu", "sigmoid", "tanh", "dropout")},
}


# --- blocks: residual and concat_skip -----------------------------------------------------------

def _image_body(args: dict[str, Any], where: Where, shape: Shape, network: Network, depth: int,
                verb: str, joined: str) -> tuple[list[PlannedLayer], Shape]:
    """A block's planned body and its output, which must be channels x height x width to be joined to the input."""
    body = plan_layers(args["layers"], shape, network, prefix=f"{where.path}.layers.", depth=depth + 1)
    output = body[-1].output_shape
    if len(output) != 3:
        raise where.error(f"its body ends with a flat {_show(output)}, but it must {verb} channels x height x width "
                          f"so it can be {joined} the block's input.")
    return body, output


def _plan_residual(args: dict[str, Any], where: Where, shape: Shape, network: Network, depth: int) -> PlannedLayer:
    """activation(body(x) + shortcut(x)); the shortcut projects (1x1 conv + batchnorm) when shapes differ."""
    channels, height, width = _image(shape, where)
    body, output = _image_body(args, where, shape, network, depth, "keep", "added to")
    stride, projection = None, 0
    if output != shape:
        stride = _shortcut_stride((height, width), (output[1], output[2]), where)
        projection = channels * output[0] + 2 * output[0]  # bias-free 1x1 conv, then batchnorm
    params = sum(layer.params for layer in body) + projection
    return PlannedLayer(where.path, "residual", args, shape, output, params, depth, tuple(body), stride)


def _plan_concat_skip(
    args: dict[str, Any], where: Where, shape: Shape, network: Network, depth: int
) -> PlannedLayer:
    """cat([x, body(x)], channels): the body must come back to its input's height and width."""
    channels, height, width = _image(shape, where)
    body, output = _image_body(args, where, shape, network, depth, "end with", "concatenated to")
    if output[1:] != shape[1:]:
        raise where.error(
            f"its body ends at {output[1]}x{output[2]} but its input is {height}x{width}; the two are concatenated "
            f"along channels, so the body must come back to {height}x{width} "
            f'(e.g. end it with an upsample with "size": [{height}, {width}]).'
        )
    params = sum(layer.params for layer in body)
    combined = (channels + output[0], height, width)
    _check_size(combined, where)
    return PlannedLayer(where.path, "concat_skip", args, shape, combined, params, depth, tuple(body))


_BLOCKS: dict[str, Callable[[dict[str, Any], Where, Shape, Network, int], PlannedLayer]] = {
    "residual": _plan_residual,
    "concat_skip": _plan_concat_skip,
}


def _shortcut_stride(size: tuple[int, int], target: tuple[int, int], where: Where) -> tuple[int, int]:
    before, after = "x".join(map(str, size)), "x".join(map(str, target))
    if target[0] > size[0] or target[1] > size[1]:
        raise where.error(
            f"its body grows its {before} input to {after}; a residual body may only keep or shrink "
            "the height and width, so that a shortcut can match it."
        )
    strides = (_stride_onto(size[0], target[0]), _stride_onto(size[1], target[1]))
    if strides[0] is None or strides[1] is None:
        raise where.error(
            f"its body shrinks its {before} input to {after}, which no strided 1x1 projection shortcut matches."
        )
    return strides[0], strides[1]


def _stride_onto(size: int, target: int) -> int | None:
    # The smallest stride whose 1x1 convolution lands on the body's output size, if any does.
    for stride in range(1, size + 1):
        if (size - 1) // stride + 1 == target:
            return stride
    return None
