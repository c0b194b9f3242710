"""Turn a validated network spec into a Flax NNX module. Imported by workers only: it loads jax.

One spec language, two builders: this one reads the same plan (networks.spec.plan_network) as
training/torch/build.py, and lays its weights out as PyTorch does (NCHW activations, OIHW conv
kernels, (out, in) linear weights, batch norm's weight/bias/running_mean/running_var), under the
same names ("3.weight", "5.layers.2.running_var", "5.shortcut.0.weight"). A snapshot's safetensors
keys are the module's own paths, 1:1, and a reader of one backend's files reads the other's.
flax.nnx.Conv and friends are channels-last with (in, out) kernels, hence the small modules here.

Every module is called as `module(x, train, key)`: randomness (dropout) comes from the key the
step passes in, never from hidden state, so a step is a pure function of (weights, batch, key)
and a resumed run draws what the uninterrupted one drew.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from networks.errors import SpecError
from networks.spec import PlannedLayer, plan_network

BN_EPS, BN_MOMENTUM = 1e-5, 0.1  # PyTorch's


def _pair(value: int | list[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _uniform(key: jax.Array, shape: tuple[int, ...], fan_in: int) -> jax.Array:
    # PyTorch's default for conv and linear, weights and biases alike: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


class Sequential(nnx.Module):
    def __init__(self, items: Sequence[nnx.Module]) -> None:
        self.items = nnx.List(items)

    def __call__(self, x: jax.Array, train: bool, key: jax.Array) -> jax.Array:
        for item in self.items:
            x = item(x, train, key)
        return x


class Conv2d(nnx.Module):
    def __init__(self, layer: PlannedLayer, rngs: nnx.Rngs, *, channels_out: int | None = None,
                 kernel: tuple[int, int] | None = None, stride: tuple[int, int] | None = None,
                 padding: Any = None, bias: bool | None = None, groups: int | None = None) -> None:
        args = layer.args
        channels_in = layer.input_shape[0]
        out = channels_out or args["out_channels"]
        kh, kw = kernel or _pair(args["kernel_size"])
        self.groups = groups or args.get("groups", 1)
        self.stride = stride or _pair(args["stride"])
        pad = args["padding"] if padding is None else padding
        self.padding = "SAME" if pad == "same" else tuple((p, p) for p in _pair(pad))
        fan_in = channels_in // self.groups * kh * kw
        self.weight = nnx.Param(_uniform(rngs.params(), (out, channels_in // self.groups, kh, kw), fan_in))
        has_bias = args.get("bias", True) if bias is None else bias
        self.bias = nnx.data(nnx.Param(_uniform(rngs.params(), (out,), fan_in)) if has_bias else None)

    def __call__(self, x: jax.Array, train: bool, key: jax.Array) -> jax.Array:
        y = jax.lax.conv_general_dilated(x, self.weight[...], self.stride, self.padding,
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                         feature_group_count=self.groups)
        return y if self.bias is None else y + self.bias[...][None, :, None, None]


class Linear(nnx.Module):
    def __init__(self, layer: PlannedLayer, rngs: nnx.Rngs) -> None:
        fan_in, out = layer.input_shape[0], layer.args["out_features"]
        self.weight = nnx.Param(_uniform(rngs.params(), (out, fan_in), fan_in))
        self.bias = nnx.data(nnx.Param(_uniform(rngs.params(), (out,), fan_in)) if layer.args["bias"] else None)

    def __call__(self, x: jax.Array, train: bool, key: jax.Array) -> jax.Array:
        y = x @ self.weight[...].T
        return y if self.bias is None else y + self.bias[...]


class BatchNorm(nnx.Module):
    """PyTorch's batch norm: batch statistics in training (the running variance unbiased), running ones in eval."""

    def __init__(self, channels: int) -> None:
        self.weight = nnx.Param(jnp.ones((channels,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))
        self.running_mean = nnx.BatchStat(jnp.zeros((channels,), jnp.float32))
        self.running_var = nnx.BatchStat(jnp.ones((channels,), jnp.float32))

    def __call__(self, x: jax.Array, train: bool, key: jax.Array) -> jax.Array:
        axes = (0,) if x.ndim == 2 else (0, 2, 3)
        shape = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
        if train:
            mean, var = jnp.mean(x, axes), jnp.var(x, axes)
            count = x.size // x.shape[1]
            unbiased = var * count / max(count - 1, 1)
            self.running_mean[...] = (1 - BN_MOMENTUM) * self.running_mean[...] + BN_MOMENTUM * mean
            self.running_var[...] = (1 - BN_MOMENTUM) * self.running_var[...] + BN_MOMENTUM * unbiased
        else:
            mean, var = self.running_mean[...], self.running_var[...]
        scale = self.weight[...] * jax.lax.rsqrt(var + BN_EPS)
        return x * scale.reshape(shape) + (self.bias[...] - mean * scale).reshape(shape)


class Pool(nnx.Module):
    def __init__(self, layer: PlannedLayer) -> None:
        self.kind = layer.type
        kh, kw = _pair(layer.args["kernel_size"])
        sh, sw = _pair(layer.args["stride"])
        ph, pw = _pair(layer.args["padding"])
        self.window, self.strides = (1, 1, kh, kw), (1, 1, sh, sw)
        self.padding = ((0, 0), (0, 0), (ph, ph), (pw, pw))

    def __call__(self, x: jax.Array, train: bool, key: jax.Array) -> jax.Array:
        if self.kind == "maxpool2d":  # padded with -inf, as PyTorch
            return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, self.window, self.strides, self.padding)
        # PyTorch's count_include_pad=True: the padding's zeros count in every window's mean.
        total = jax.lax.reduce_window(x, 0.0, jax.lax.add, self.window, self.strides, self.padding)
        return total / (self.window[2] * self.window[3])


class AdaptiveAvgPool(nnx.Module):
    """PyTorch's adaptive average pooling for the planned input size, as one matrix product."""

    def __init__(self, layer: PlannedLayer) -> None:
        (_, h, w), (_, oh, ow) = layer.input_shape, layer.output_shape
        weights = np.zeros((h, w, oh, ow), np.float32)
        for i in range(oh):
            rows = slice(i * h // oh, -(-(i + 1) * h // oh))
            for j in range(ow):
                cols = slice(j * w // ow, -(-(j + 1) * w // ow))
                weights[rows, cols, i, j] = 1.0 / ((rows.stop - rows.start) * (cols.stop - cols.start))
        self.matrix = nnx.Variable(jnp.asarray(weights.reshape(h * w, oh * ow)))  # a constant, never a weight
        self.output_size = (oh, ow)

    def __call__(self, x: jax.Array, train: bool, key: jax.Array) -> jax.Array:
        n, c = x.shape[:2]
        return (x.reshape(n, c, -1) @ self.matrix[...]).reshape(n, c, *self.output_size)


class Dropout(nnx.Module):
    def __init__(self, layer: PlannedLayer, salt: int) -> None:
        self.p, self.salt, self.channels = float(layer.args["p"]), salt, layer.type == "dropout2d"

    def __call__(self, x: jax.Array, train: bool, key: jax.Array) -> jax.Array:
        if not train or self.p == 0:
            return x
        shape = (*x.shape[:2], *([1] * (x.ndim - 2))) if self.channels else x.shape
        keep = jax.random.bernoulli(jax.random.fold_in(key, self.salt), 1.0 - self.p, shape)
        return jnp.where(keep, x / (1.0 - self.p), 0.0)


class Activation(nnx.Module):
    def __init__(self, fn: Callable[[jax.Array], jax.Array]) -> None:
        self.fn = fn

    def __call__(self, x: jax.Array, train: bool, key: jax.Array) -> jax.Array:
        return self.fn(x)


class Residual(nnx.Module):
    """activation(layers(x) + shortcut(x)); `layers` and `shortcut` named as torch's ResidualBlock."""

    def __init__(self, layer: PlannedLayer, rngs: nnx.Rngs, salts: list[int]) -> None:
        self.layers = _sequential(layer.body, rngs, salts)
        shortcut: Sequential | None = None
        if layer.shortcut_stride is not None:
            projection = Conv2d(layer, rngs, channels_out=layer.output_shape[0], kernel=(1, 1),
                                stride=layer.shortcut_stride, padding=0, bias=False, groups=1)
            shortcut = Sequential([projection, BatchNorm(layer.output_shape[0])])
        self.shortcut = nnx.data(shortcut)
        self.relu = layer.args["activation"] == "relu"

    def __call__(self, x: jax.Array, train: bool, key: jax.Array) -> jax.Array:
        skip = x if self.shortcut is None else self.shortcut(x, train, key)
        y = self.layers(x, train, key) + skip
        return jax.nn.relu(y) if self.relu else y


def _activation(layer: PlannedLayer) -> Callable[[jax.Array], jax.Array]:
    args = layer.args
    return {
        "relu": jax.nn.relu,
        "leaky_relu": lambda x: jax.nn.leaky_relu(x, args.get("negative_slope", 0.01)),
        "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # PyTorch's default: the exact erf form
        "elu": lambda x: jax.nn.elu(x, args.get("alpha", 1.0)),
        "sigmoid": jax.nn.sigmoid,
        "tanh": jnp.tanh,
        "flatten": lambda x: x.reshape(x.shape[0], -1),  # NCHW order, as PyTorch flattens
    }[layer.type]


def _module(layer: PlannedLayer, rngs: nnx.Rngs, salts: list[int]) -> nnx.Module:
    kind = layer.type
    if kind == "conv2d":
        return Conv2d(layer, rngs)
    if kind == "linear":
        return Linear(layer, rngs)
    if kind in ("batchnorm2d", "batchnorm1d"):
        return BatchNorm(layer.input_shape[0])
    if kind in ("maxpool2d", "avgpool2d"):
        return Pool(layer)
    if kind == "adaptive_avgpool2d":
        return AdaptiveAvgPool(layer)
    if kind in ("dropout", "dropout2d"):
        salts.append(len(salts))
        return Dropout(layer, salts[-1])
    if kind == "residual":
        return Residual(layer, rngs, salts)
    if kind in ("relu", "leaky_relu", "gelu", "elu", "sigmoid", "tanh", "flatten"):
        return Activation(_activation(layer))
    raise SpecError(f"Layer {layer.path} ({kind}): the jax backend cannot build {kind} layers.")


def _sequential(plan: Sequence[PlannedLayer], rngs: nnx.Rngs, salts: list[int]) -> Sequential:
    return Sequential([_module(layer, rngs, salts) for layer in plan])


def build_model(spec: dict[str, Any], input_shape: tuple[int, int, int], num_classes: int, seed: int = 0,
                task: str | None = None) -> Sequential:
    """The network for a spec, returning logits (N, num_classes) for NCHW float input; the initial
    weights depend only on `seed`. Validates first (SpecError as in summarize())."""
    plan = plan_network(spec, input_shape, num_classes, task)
    return _sequential(plan, nnx.Rngs(params=seed), [])


# --- weights by name ------------------------------------------------------------------------------

def _name(path: tuple[Any, ...]) -> str:
    # Sequential's own list attribute is not part of the name: ("items", 5, "layers", "items", 2, "weight") -> 5.layers.2.weight
    return ".".join(str(part) for part in path if part != "items")


def named_weights(model: nnx.Module) -> dict[str, jax.Array]:
    """Every parameter and batch statistic by its PyTorch-style name (the safetensors keys)."""
    state = nnx.state(model, (nnx.Param, nnx.BatchStat))
    return {_name(path): value[...] for path, value in nnx.to_flat_state(state)}


def load_weights(model: nnx.Module, weights: dict[str, Any]) -> None:
    """Set every parameter and batch statistic from `weights` (as named_weights names them)."""
    state = nnx.state(model, (nnx.Param, nnx.BatchStat))
    for path, variable in nnx.to_flat_state(state):
        name = _name(path)
        if name not in weights:
            raise KeyError(f"The weights have no tensor {name!r}.")
        value = jnp.asarray(weights[name])
        if value.shape != variable[...].shape:
            raise ValueError(f"{name!r} is {tuple(value.shape)} in the weights, {variable[...].shape} in the network.")
        variable[...] = value
    nnx.update(model, state)
