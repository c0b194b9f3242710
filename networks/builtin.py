"""The built-in networks, written as specs that adapt to a dataset's channels, image size and classes.

Each classification spec ends in a linear layer with out_features "num_classes" rather than the
number itself, each segmentation spec in a 1x1 conv2d with out_channels "num_classes" at the
input's height and width, and the detection spec in a 1x1 conv2d with out_channels "num_classes" (the
task's head: classes + 4) at a quarter of the input's size, so a stored spec stays reusable on another dataset; summarize() and
build_model() fill it in.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from networks.shapes import Shape, plan_layers
from networks.spec import plan_network, validate_spec

Layer = dict[str, Any]
InputShape = tuple[int, int, int]

BUILTIN_NETWORKS: dict[str, str] = {
    "lenet": "LeNet",
    "mlp": "Multilayer perceptron (512-256)",
    "alexnet": "AlexNet (small)",
    "resnet18": "ResNet-18",
    "unet": "U-Net (4 levels, batch norm)",
    "fcn_resnet18": "FCN on ResNet-18 (8s-style skips)",
    "centernet": "CenterNet on ResNet-18 (3-level pyramid, stride 4)",
}

# Measured on the generated digits (bench/detection.py): AdamW at 2e-3 with a cosine decay.
CENTERNET_SETTINGS: dict[str, Any] = {"optimizer": "adamw", "learning_rate": 0.002, "weight_decay": 0.0001,
                                      "batch_size": 8, "lr_policy": "cosine"}

# The solver settings a built-in brings for the job fields left out (jobs.options.JobSettings names);
# the classification built-ins take the job defaults, which were tuned on LeNet and the digits.
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "unet": {"optimizer": "adam", "learning_rate": 0.001, "batch_size": 8},
    "fcn_resnet18": {"optimizer": "sgd", "learning_rate": 0.01, "momentum": 0.9, "weight_decay": 0.0001,
                     "batch_size": 8, "lr_policy": "cosine"},
    "centernet": CENTERNET_SETTINGS,
}


class UnknownNetwork(KeyError):
    def __str__(self) -> str:
        # KeyError's own str() wraps the name in quotes, which reads badly on a form.
        return f"Unknown built-in network {self.args[0]!r}; choose one of {', '.join(BUILTIN_NETWORKS)}."


def builtin_spec(name: str, input_shape: InputShape, num_classes: int) -> dict[str, Any]:
    """The spec of a built-in network for this input shape; num_classes stays a placeholder in it."""
    try:
        make = _MAKERS[name]
    except KeyError:
        raise UnknownNetwork(name) from None
    return {"layers": make(tuple(input_shape))}


def _conv(out: int, kernel: int, *, stride: int = 1, padding: int | str = 0, bias: bool = True) -> Layer:
    return {
        "type": "conv2d", "out_channels": out, "kernel_size": kernel,
        "stride": stride, "padding": padding, "bias": bias,
    }


def _max_pool(kernel: int, stride: int | None = None, padding: int = 0) -> Layer:
    return {"type": "maxpool2d", "kernel_size": kernel, "stride": stride or kernel, "padding": padding}


def _layer(type_: str, **args: Any) -> Layer:
    return {"type": type_, **args}


def _classifier(*hidden: int, dropout: float = 0.5) -> list[Layer]:
    layers = [_layer("flatten")]
    for features in hidden:
        layers += [_layer("linear", out_features=features), _layer("relu")]
        if dropout:
            layers.append(_layer("dropout", p=dropout))
    return [*layers, _layer("linear", out_features="num_classes")]


def _feature_size(layers: list[Layer], input_shape: InputShape) -> tuple[int, int]:
    """Height and width after a stack of feature layers, by the same inference summarize() uses."""
    probe = [*layers, _layer("adaptive_avgpool2d", output_size=1), _layer("flatten"),
             _layer("linear", out_features="num_classes")]
    shape = plan_network({"layers": probe}, input_shape, 1)[len(layers) - 1].output_shape
    return shape[1], shape[2]


def _shrink_to(layers: list[Layer], input_shape: InputShape, limit: int, target: int) -> list[Layer]:
    """Average-pool a feature map larger than `limit` down to `target`, so the classifier stays small."""
    height, width = _feature_size(layers, input_shape)
    if max(height, width) <= limit:
        return layers
    return [*layers, _layer("adaptive_avgpool2d", output_size=[min(height, target), min(width, target)])]


# --- LeNet --------------------------------------------------------------------------------------

def _lenet(input_shape: InputShape) -> list[Layer]:
    smallest = min(input_shape[1:])
    # The classic valid 5x5 convolutions need 16 px; smaller images keep their size with "same".
    padding: int | str = 0 if smallest >= 16 else "same"
    pool = [_max_pool(2)] if smallest >= 4 else []
    features = [_conv(20, 5, padding=padding), *pool, _conv(50, 5, padding=padding), *pool]
    return [*_shrink_to(features, input_shape, limit=8, target=4), *_classifier(500, dropout=0)]


# --- MLP ----------------------------------------------------------------------------------------

def _mlp(input_shape: InputShape) -> list[Layer]:
    return _classifier(512, 256)


# --- AlexNet ------------------------------------------------------------------------------------

def _conv_bn_relu(out: int, kernel: int, **conv: Any) -> list[Layer]:
    return [_conv(out, kernel, bias=False, **conv), _layer("batchnorm2d"), _layer("relu")]


def _alexnet(input_shape: InputShape) -> list[Layer]:
    features = _alexnet_large(input_shape) if min(input_shape[1:]) > 64 else _alexnet_small(input_shape)
    height, width = _feature_size(features, input_shape)
    pool = _layer("adaptive_avgpool2d", output_size=[min(height, 3), min(width, 3)])
    return [*features, pool, *_classifier(1024, 1024)]


def _alexnet_small(input_shape: InputShape) -> list[Layer]:
    # Small images: 3x3 convolutions that keep the size, and a 2x2 pool wherever the map allows one.
    side = min(input_shape[1:])
    layers: list[Layer] = []
    for stage in ([64], [192], [384, 256, 256]):
        for out in stage:
            layers += _conv_bn_relu(out, 3, padding=1)
        if side >= 2:
            layers.append(_max_pool(2))
            side //= 2
    return layers


def _alexnet_large(input_shape: InputShape) -> list[Layer]:
    # The original's 11x11 stride-4 stem and overlapping 3x3 pools, for images above 64 px.
    return [
        *_conv_bn_relu(64, 11, stride=4, padding=2), _max_pool(3, 2),
        *_conv_bn_relu(192, 5, padding=2), _max_pool(3, 2),
        *_conv_bn_relu(384, 3, padding=1),
        *_conv_bn_relu(256, 3, padding=1),
        *_conv_bn_relu(256, 3, padding=1), _max_pool(3, 2),
    ]


# --- ResNet-18 ----------------------------------------------------------------------------------

def _basic_block(channels: int, stride: int) -> Layer:
    body = [
        *_conv_bn_relu(channels, 3, stride=stride, padding=1),
        _conv(channels, 3, padding=1, bias=False), _layer("batchnorm2d"),
    ]
    return _layer("residual", layers=body, activation="relu")


def _resnet_stem(input_shape: InputShape) -> list[Layer]:
    if max(input_shape[1:]) <= 64:
        # CIFAR-style stem: a 7x7/2 conv and a max-pool would leave too little of a small image.
        return _conv_bn_relu(64, 3, padding=1)
    return [*_conv_bn_relu(64, 7, stride=2, padding=3), _max_pool(3, 2, padding=1)]


def _resnet_stage(channels: int, *, first: bool) -> list[Layer]:
    return [_basic_block(channels, stride=1 if first else 2), _basic_block(channels, stride=1)]


def _resnet18(input_shape: InputShape) -> list[Layer]:
    blocks = []
    for index, channels in enumerate((64, 128, 256, 512)):
        blocks += _resnet_stage(channels, first=index == 0)
    return [*_resnet_stem(input_shape), *blocks, _layer("adaptive_avgpool2d", output_size=1), *_classifier(dropout=0)]


# --- U-Net --------------------------------------------------------------------------------------

UNET_LEVELS = 4  # max-pools on the way down; fewer where the image is too small to halve that often


def _unet(input_shape: InputShape) -> list[Layer]:
    """Two conv-bn-relu per level, a 2x2 max-pool down, a 2x2 stride-2 transposed conv up and the
    level's own features concatenated back (concat_skip), then a 1x1 conv to one score per class."""
    _, height, width = input_shape
    levels = min(UNET_LEVELS, min(height, width).bit_length() - 1)
    # 16 channels at the top keep a U-Net on a CPU worker; large images get 32.
    base = 16 if height * width <= 160 * 160 else 32
    widths = [base * 2**level for level in range(levels + 1)]
    sizes = [(height >> level, width >> level) for level in range(levels + 1)]
    return [*_unet_level(widths, sizes), _conv("num_classes", 1)]


def _unet_level(widths: list[int], sizes: list[tuple[int, int]]) -> list[Layer]:
    encoder = _double_conv(widths[0])
    if len(widths) == 1:
        return encoder  # the bottleneck
    height, width = sizes[0]
    # A floored odd size comes back whole: output_padding adds the row or column the pool dropped.
    up = _layer("conv_transpose2d", out_channels=widths[0], kernel_size=2, stride=2,
                output_padding=[height % 2, width % 2])
    down = [_max_pool(2), *_unet_level(widths[1:], sizes[1:]), up]
    return [*encoder, _layer("concat_skip", layers=down), *_double_conv(widths[0])]


def _double_conv(channels: int) -> list[Layer]:
    return [*_conv_bn_relu(channels, 3, padding=1), *_conv_bn_relu(channels, 3, padding=1)]


# --- FCN on ResNet-18 ---------------------------------------------------------------------------

def _fcn_resnet18(input_shape: InputShape) -> list[Layer]:
    """ResNet-18's stem and stages; the last stage's features go back up bilinearly to the third's,
    then the second's size, concatenated with each (FCN-8s's skips, concatenated instead of summed),
    a 1x1 conv to one score per class and a bilinear upsample to the input's size."""
    stem = _resnet_stem(input_shape)
    first, second, third, fourth = (_resnet_stage(c, first=i == 0) for i, c in enumerate((64, 128, 256, 512)))
    encoder = [*stem, *first, *second]
    eighth = _shape_after(encoder, input_shape)
    sixteenth = _shape_after([*encoder, *third], input_shape)
    deepest = [*fourth, *_conv_bn_relu(256, 1), _upsample(sixteenth)]
    middle = [*third, _layer("concat_skip", layers=deepest), *_conv_bn_relu(128, 1), _upsample(eighth)]
    head = [*_conv_bn_relu(128, 3, padding=1), _conv("num_classes", 1),
            _layer("upsample", size="input", mode="bilinear")]
    return [*encoder, _layer("concat_skip", layers=middle), *head]


def _upsample(shape: Shape) -> Layer:
    return _layer("upsample", size=[shape[1], shape[2]], mode="bilinear")


def _shape_after(layers: list[Layer], input_shape: InputShape) -> Shape:
    """The output shape of a stack of layers, by the same inference summarize() uses."""
    return plan_layers(validate_spec({"layers": layers})["layers"], input_shape, 1, prefix="", depth=0)[-1].output_shape


# --- CenterNet on ResNet-18 ---------------------------------------------------------------------

CENTERNET_STRIDE = 4  # the head's cells: ceil(H / 4) x ceil(W / 4), whatever the input size
CENTERNET_FULL_WIDTH_PIXELS = 160 * 160


def _centernet(input_shape: InputShape) -> list[Layer]:
    """ResNet-18's 7x7/2 stem and max-pool (always: the head is at stride 4 for every input size) and
    its four stages; the deepest features go back up bilinearly to the third, second and first
    stage's size, concatenated with each (a small feature pyramid, as fcn_resnet18's skips), then a
    3x3 conv and a 1x1 conv to the detection head: per stride-4 cell, one heatmap logit per class,
    the box's width and height, and its centre's offset in the cell (training.torch.detection)."""
    _, height, width = input_shape
    # ResNet-18's widths (64..512) up to 160x160; larger images get half of every width, a quarter
    # of the work per pixel, so a 320x240 dataset still trains in minutes an epoch on a CPU worker.
    base = 64 if height * width <= CENTERNET_FULL_WIDTH_PIXELS else 32
    stem = [*_conv_bn_relu(base, 7, stride=2, padding=3), _max_pool(3, 2, padding=1)]
    first, second, third, fourth = (_resnet_stage(base * 2**i, first=i == 0) for i in range(4))
    quarter = _shape_after([*stem, *first], input_shape)
    eighth = _shape_after([*stem, *first, *second], input_shape)
    sixteenth = _shape_after([*stem, *first, *second, *third], input_shape)
    deepest = [*fourth, *_conv_bn_relu(2 * base, 1), _upsample(sixteenth)]
    level16 = [*third, _layer("concat_skip", layers=deepest), *_conv_bn_relu(2 * base, 3, padding=1), _upsample(eighth)]
    level8 = [*second, _layer("concat_skip", layers=level16), *_conv_bn_relu(base, 3, padding=1), _upsample(quarter)]
    head = [*_conv_bn_relu(base, 3, padding=1), _conv("num_classes", 1)]
    return [*stem, *first, _layer("concat_skip", layers=level8), *head]


_MAKERS: dict[str, Callable[[InputShape], list[Layer]]] = {
    "lenet": _lenet,
    "mlp": _mlp,
    "alexnet": _alexnet,
    "resnet18": _resnet18,
    "unet": _unet,
    "fcn_resnet18": _fcn_resnet18,
    "centernet": _centernet,
}
