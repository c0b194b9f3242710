"""Turn a validated network spec into a torch module. Imported by workers only: it loads torch."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from networks.spec import PlannedLayer, plan_network


class ResidualBlock(nn.Module):
    """activation(layers(x) + shortcut(x)).

    The body is called `layers`, as in the spec, so a row's path ("5.layers.2") is also the
    module's name for `model.get_submodule()`.
    """

    def __init__(self, layers: nn.Sequential, shortcut: nn.Module, activation: nn.Module) -> None:
        super().__init__()
        self.layers = layers
        self.shortcut = shortcut
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.layers(x) + self.shortcut(x))


class ConcatSkip(nn.Module):
    """cat([x, layers(x)], channels): a U-Net's skip connection around its body, `layers` as in the spec."""

    def __init__(self, layers: nn.Sequential) -> None:
        super().__init__()
        self.layers = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.layers(x)], dim=1)


def build_model(
    spec: dict[str, Any], input_shape: tuple[int, int, int], num_classes: int, task: str | None = None
) -> nn.Module:
    """The network for a spec, returning logits of shape (N, num_classes), or (N, num_classes, H, W)
    per pixel for a segmentation head (networks.spec.HEAD_TASKS; `task` None takes either).

    Validates first (SpecError as in summarize()); initial weights depend only on torch's seed.
    """
    return _sequential(plan_network(spec, input_shape, num_classes, task))


def _sequential(plan: Sequence[PlannedLayer]) -> nn.Sequential:
    return nn.Sequential(*(_module(layer) for layer in plan))


def _module(layer: PlannedLayer) -> nn.Module:
    return _MAKERS[layer.type](layer.args, layer)


def _size(value: int | list[int]) -> int | tuple[int, int]:
    return value if isinstance(value, int) else (value[0], value[1])


def _conv2d(args: dict[str, Any], layer: PlannedLayer) -> nn.Module:
    padding = args["padding"] if args["padding"] == "same" else _size(args["padding"])
    return nn.Conv2d(
        layer.input_shape[0], args["out_channels"], _size(args["kernel_size"]),
        stride=_size(args["stride"]), padding=padding, bias=args["bias"], groups=args["groups"],
    )


def _conv_transpose2d(args: dict[str, Any], layer: PlannedLayer) -> nn.Module:
    return nn.ConvTranspose2d(
        layer.input_shape[0], args["out_channels"], _size(args["kernel_size"]), stride=_size(args["stride"]),
        padding=_size(args["padding"]), output_padding=_size(args["output_padding"]), bias=args["bias"],
    )


def _upsample(args: dict[str, Any], layer: PlannedLayer) -> nn.Module:
    # The planned output size, never a scale factor: PyTorch then lands on exactly what the plan says.
    align = False if args["mode"] == "bilinear" else None
    return nn.Upsample(size=tuple(layer.output_shape[1:]), mode=args["mode"], align_corners=align)


def _residual(args: dict[str, Any], layer: PlannedLayer) -> nn.Module:
    shortcut: nn.Module = nn.Identity()
    if layer.shortcut_stride is not None:
        channels_in, channels_out = layer.input_shape[0], layer.output_shape[0]
        shortcut = nn.Sequential(
            nn.Conv2d(channels_in, channels_out, 1, stride=layer.shortcut_stride, bias=False),
            nn.BatchNorm2d(channels_out),
        )
    # Not in place: the shortcut still needs the block's input after the body has run.
    activation = nn.ReLU() if args["activation"] == "relu" else nn.Identity()
    return ResidualBlock(_sequential(layer.body), shortcut, activation)


_MAKERS: dict[str, Callable[[dict[str, Any], PlannedLayer], nn.Module]] = {
    "conv2d": _conv2d,
    "linear": lambda a, layer: nn.Linear(layer.input_shape[0], a["out_features"], bias=a["bias"]),
    "relu": lambda a, layer: nn.ReLU(),
    "leaky_relu": lambda a, layer: nn.LeakyReLU(a["negative_slope"]),
    "gelu": lambda a, layer: nn.GELU(),
    "elu": lambda a, layer: nn.ELU(a["alpha"]),
    "sigmoid": lambda a, layer: nn.Sigmoid(),
    "tanh": lambda a, layer: nn.Tanh(),
    "maxpool2d": lambda a, layer: nn.MaxPool2d(_size(a["kernel_size"]), _size(a["stride"]), _size(a["padding"])),
    "avgpool2d": lambda a, layer: nn.AvgPool2d(_size(a["kernel_size"]), _size(a["stride"]), _size(a["padding"])),
    "adaptive_avgpool2d": lambda a, layer: nn.AdaptiveAvgPool2d(_size(a["output_size"])),
    "batchnorm2d": lambda a, layer: nn.BatchNorm2d(layer.input_shape[0]),
    "batchnorm1d": lambda a, layer: nn.BatchNorm1d(layer.input_shape[0]),
    "dropout": lambda a, layer: nn.Dropout(a["p"]),
    "dropout2d": lambda a, layer: nn.Dropout2d(a["p"]),
    "flatten": lambda a, layer: nn.Flatten(),
    "residual": _residual,
    "conv_transpose2d": _conv_transpose2d,
    "upsample": _upsample,
    "concat_skip": lambda a, layer: ConcatSkip(_sequential(layer.body)),
}
