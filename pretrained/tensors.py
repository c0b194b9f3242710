"""Tensor names and shapes without torch: a safetensors header, a spec's state_dict, the report.

The web process never imports torch, yet must say before a job is queued what a fine-tune will
copy. A network's state_dict names follow from the spec the way training.torch.build builds
it (each layer's module is its path in the spec; a residual block has `layers` and `shortcut`),
checked against torch's own state_dict in tests/pretrained/test_tensor_names.py.
"""
from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from networks.spec import PlannedLayer, plan_network

TensorIndex = dict[str, list[int]]
# Float, bf16 and integer tensors only: a weights file has no business holding anything else.
ALLOWED_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8"})
MAX_HEADER_BYTES = 100 * 1024 * 1024


class WeightsRejected(Exception):
    """The file is not plain safetensors weights we accept; the message says why."""


# --- a safetensors header, read as JSON ------------------------------------------------------

def read_index(file: IO[bytes], size: int) -> TensorIndex:
    """{name: shape} from a safetensors file: 8-byte little-endian header length, then JSON."""
    head = file.read(8)
    if len(head) != 8:
        raise WeightsRejected("The file is too short to be safetensors.")
    (length,) = struct.unpack("<Q", head)
    if length < 2 or length > min(MAX_HEADER_BYTES, size - 8):
        raise WeightsRejected("The file is not safetensors (its header length is impossible).")
    try:
        header = json.loads(file.read(length))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WeightsRejected("The file is not safetensors (its header is not JSON).") from None
    if not isinstance(header, dict):
        raise WeightsRejected("The file is not safetensors (its header is not a JSON object).")
    return _checked_entries(header, size - 8 - length)


def _checked_entries(header: dict[str, Any], data_bytes: int) -> TensorIndex:
    index: TensorIndex = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise WeightsRejected(f"The header entry {name!r} is not a tensor.")
        if entry["dtype"] not in ALLOWED_DTYPES:
            raise WeightsRejected(f"The tensor {name!r} has dtype {entry['dtype']!r}; only float, bf16 and "
                                  "integer tensors are accepted.")
        shape, offsets = entry["shape"], entry["data_offsets"]
        if not _ints(shape) or not _ints(offsets) or len(offsets) != 2 or not 0 <= offsets[0] <= offsets[1] <= data_bytes:
            raise WeightsRejected(f"The tensor {name!r} has a bad shape or offsets.")
        index[name] = list(shape)
    if not index:
        raise WeightsRejected("The file holds no tensors.")
    return index


def _ints(values: object) -> bool:
    return isinstance(values, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)


def index_of_file(path: Path) -> TensorIndex:
    with path.open("rb") as file:
        return read_index(file, path.stat().st_size)


# --- a spec's state_dict, by name --------------------------------------------------------------

def network_tensors(spec: dict[str, Any], input_shape: tuple[int, int, int], num_classes: int) -> dict[str, dict[str, Any]]:
    """{state_dict name: {"shape", "layer", "type"}} of the model build_model() makes, in its order."""
    return {name: {"shape": shape, "layer": layer.path, "type": layer.type}
            for layer, name, shape in _walk(plan_network(spec, input_shape, num_classes))}


def _walk(plan: list[PlannedLayer] | tuple[PlannedLayer, ...]) -> Iterator[tuple[PlannedLayer, str, list[int]]]:
    for layer in plan:
        if layer.type == "residual":
            yield from _walk(layer.body)
            yield from _shortcut(layer)
        elif layer.type == "concat_skip":
            yield from _walk(layer.body)
        else:
            for suffix, shape in _own_tensors(layer):
                yield layer, f"{layer.path}.{suffix}", shape


def _own_tensors(layer: PlannedLayer) -> list[tuple[str, list[int]]]:
    args, channels = layer.args, layer.input_shape[0]
    if layer.type == "conv2d":
        kernel = args["kernel_size"]
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else (kernel[0], kernel[1])
        out = args["out_channels"]
        return [("weight", [out, channels // args["groups"], kh, kw]), *([("bias", [out])] if args["bias"] else [])]
    if layer.type == "conv_transpose2d":
        kernel = args["kernel_size"]
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else (kernel[0], kernel[1])
        out = args["out_channels"]  # a transposed conv's weight is (in, out, kh, kw)
        return [("weight", [channels, out, kh, kw]), *([("bias", [out])] if args["bias"] else [])]
    if layer.type == "linear":
        out = args["out_features"]
        return [("weight", [out, channels]), *([("bias", [out])] if args["bias"] else [])]
    if layer.type in ("batchnorm2d", "batchnorm1d"):
        return _batchnorm(channels)
    return []


def _batchnorm(channels: int) -> list[tuple[str, list[int]]]:
    return [("weight", [channels]), ("bias", [channels]), ("running_mean", [channels]),
            ("running_var", [channels]), ("num_batches_tracked", [])]


def _shortcut(layer: PlannedLayer) -> Iterator[tuple[PlannedLayer, str, list[int]]]:
    if layer.shortcut_stride is None:
        return
    channels_in, channels_out = layer.input_shape[0], layer.output_shape[0]
    yield layer, f"{layer.path}.shortcut.0.weight", [channels_out, channels_in, 1, 1]
    for suffix, shape in _batchnorm(channels_out):
        yield layer, f"{layer.path}.shortcut.1.{suffix}", shape


# --- the compatibility report ------------------------------------------------------------------

def compatibility(target: dict[str, dict[str, Any]], source: TensorIndex) -> dict[str, Any]:
    """What a fine-tune does with each tensor: copied (same name and shape), remade (same name,
    other shape), new (no such name in the source); and what of the source goes unused."""
    rows = []
    for name, tensor in target.items():
        theirs = source.get(name)
        action = "new" if theirs is None else "copied" if list(theirs) == tensor["shape"] else "remade"
        rows.append({"name": name, "layer": tensor["layer"], "type": tensor["type"], "shape": tensor["shape"],
                     "source_shape": theirs, "action": action})
    unused = [{"name": name, "shape": shape} for name, shape in source.items() if name not in target]
    counts = {action: sum(row["action"] == action for row in rows) for action in ("copied", "remade", "new")}
    return {"rows": rows, "unused": unused, "counts": {**counts, "unused": len(unused)},
            "summary": _summary(rows, counts, len(unused))}


def _summary(rows: list[dict[str, Any]], counts: dict[str, int], unused: int) -> str:
    remade = [row for row in rows if row["action"] == "remade"]
    text = f"Copied {counts['copied']} tensors; re-made {counts['remade']}"
    classifier = _classifier_change(remade, rows)
    if classifier:
        text += f" ({classifier})"
    return f"{text}; {counts['new']} left new; {unused} unused in the source."


def _classifier_change(remade: list[dict[str, Any]], rows: list[dict[str, Any]]) -> str:
    last = rows[-1] if rows else None
    if last is None or last["type"] != "linear" or not any(row["layer"] == last["layer"] for row in remade):
        return ""
    weight = next(row for row in rows if row["layer"] == last["layer"] and row["name"].endswith(".weight"))
    if weight["source_shape"] is None or not weight["source_shape"]:
        return "classifier"
    return f"classifier: {weight['source_shape'][0]} → {weight['shape'][0]} classes"


# --- torchvision names -------------------------------------------------------------------------

def torchvision_rename(network: str, index: TensorIndex) -> dict[str, str]:
    """{torchvision name: built-in name} when `index` looks like torchvision's ResNet-18 or AlexNet
    state_dict and `network` is the built-in of the same shape; {} otherwise."""
    if network == "resnet18" and "conv1.weight" in index and "fc.weight" in index:
        return {name: _resnet18_name(name) for name in index}
    if network == "alexnet" and "features.0.weight" in index and "classifier.6.weight" in index:
        return {name: _alexnet_name(name) for name in index}
    return {}


# torchvision's resnet18: conv1, bn1, relu, maxpool, layer1..layer4 of two BasicBlocks
# (conv1, bn1, relu, conv2, bn2, downsample = Sequential(conv1x1, bn)), avgpool, fc.
# The built-in's large-image stem: 0 conv 7x7/2, 1 bn, 2 relu, 3 maxpool; blocks 4..11; 14 the linear.
_RESNET_STEM = {"conv1": "0", "bn1": "1", "fc": "14"}
_RESNET_BLOCK = {"conv1": "layers.0", "bn1": "layers.1", "conv2": "layers.3", "bn2": "layers.4",
                 "downsample.0": "shortcut.0", "downsample.1": "shortcut.1"}
_RESNET_BLOCK_NAME = re.compile(r"^layer([1-4])\.([01])\.(conv1|bn1|conv2|bn2|downsample\.[01])\.(\w+)$")


def _resnet18_name(name: str) -> str:
    head, _, tail = name.rpartition(".")
    if head in _RESNET_STEM:
        return f"{_RESNET_STEM[head]}.{tail}"
    match = _RESNET_BLOCK_NAME.match(name)
    if match is None:
        return name
    stage, block, part, tail = match.groups()
    return f"{4 + 2 * (int(stage) - 1) + int(block)}.{_RESNET_BLOCK[part]}.{tail}"


# torchvision's alexnet: features = conv 0, 3, 6, 8, 10 (with ReLUs and pools between), classifier =
# dropout 0, linear 1, relu, dropout, linear 4, relu, linear 6. The built-in (images above 64 px)
# puts a batch norm after each convolution: convs at 0, 4, 8, 11, 14 and linears at 20, 23, 26.
_ALEXNET = {"features.0": "0", "features.3": "4", "features.6": "8", "features.8": "11", "features.10": "14",
            "classifier.1": "20", "classifier.4": "23", "classifier.6": "26"}


def _alexnet_name(name: str) -> str:
    head, _, tail = name.rpartition(".")
    return f"{_ALEXNET[head]}.{tail}" if head in _ALEXNET else name
