"""The report's tensor names and shapes, derived without torch, are torch's state_dict for every built-in."""
from __future__ import annotations

import io
import json
import struct

import pytest

from networks.builtin import BUILTIN_NETWORKS, builtin_spec
from pretrained.services import fitting_rename
from pretrained.tensors import WeightsRejected, compatibility, network_tensors, read_index, torchvision_rename

SHAPES = [(1, 8, 8), (3, 32, 32), (1, 28, 28), (3, 96, 96)]


@pytest.mark.parametrize("network", list(BUILTIN_NETWORKS))
@pytest.mark.parametrize("shape", SHAPES)
def test_it_names_every_tensor_as_torch_does(network, shape):
    from training.torch.build import build_model

    spec = builtin_spec(network, shape, 7)
    derived = {name: tensor["shape"] for name, tensor in network_tensors(spec, shape, 7).items()}
    built = {name: list(value.shape) for name, value in build_model(spec, shape, 7).state_dict().items()}
    assert list(derived.items()) == list(built.items())


def test_it_names_a_grouped_conv_and_a_custom_spec_as_torch_does():
    from training.torch.build import build_model

    spec = {"layers": [{"type": "conv2d", "out_channels": 6, "kernel_size": [3, 1], "groups": 3, "bias": False},
                       {"type": "batchnorm2d"}, {"type": "flatten"}, {"type": "batchnorm1d"},
                       {"type": "linear", "out_features": "num_classes"}]}
    derived = {name: tensor["shape"] for name, tensor in network_tensors(spec, (3, 6, 6), 4).items()}
    assert derived == {name: list(v.shape) for name, v in build_model(spec, (3, 6, 6), 4).state_dict().items()}


def test_it_reports_copied_remade_new_and_unused():
    target = {"0.weight": {"shape": [20, 1, 5, 5], "layer": "0", "type": "conv2d"},
              "5.weight": {"shape": [4, 500], "layer": "5", "type": "linear"},
              "5.bias": {"shape": [4], "layer": "5", "type": "linear"},
              "6.weight": {"shape": [3], "layer": "6", "type": "linear"}}
    source = {"0.weight": [20, 1, 5, 5], "5.weight": [10, 500], "5.bias": [10], "extra": [1]}
    report = compatibility(target, source)
    assert [row["action"] for row in report["rows"]] == ["copied", "remade", "remade", "new"]
    assert report["unused"] == [{"name": "extra", "shape": [1]}]
    assert report["counts"] == {"copied": 1, "remade": 2, "new": 1, "unused": 1}


def test_it_says_when_the_classifier_is_remade():
    spec = builtin_spec("lenet", (1, 8, 8), 4)
    target = network_tensors(spec, (1, 8, 8), 4)
    source = {**{name: t["shape"] for name, t in network_tensors(builtin_spec("lenet", (1, 8, 8), 10), (1, 8, 8), 10).items()}}
    report = compatibility(target, source)
    assert "classifier: 10 → 4 classes" in report["summary"]
    assert report["counts"]["remade"] == 2


def _safetensors(header: dict) -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + b"\0" * 64


def test_it_reads_a_header_without_torch():
    data = _safetensors({"__metadata__": {"a": "b"}, "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}})
    assert read_index(io.BytesIO(data), len(data)) == {"w": [2, 2]}


@pytest.mark.parametrize("data", [
    b"PK\x03\x04 a zip, not safetensors at all",
    _safetensors({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 1000]}}),
    _safetensors({"w": {"dtype": "OBJ", "shape": [2], "data_offsets": [0, 8]}}),
    _safetensors({"w": "not a tensor"}),
    _safetensors({}),
])
def test_it_refuses_what_is_not_plain_tensors(data):
    with pytest.raises(WeightsRejected):
        read_index(io.BytesIO(data), len(data))


def test_it_maps_torchvision_resnet18_names_onto_the_builtin():
    shape = (3, 224, 224)
    target = network_tensors(builtin_spec("resnet18", shape, 1000), shape, 1000)
    torchvision = _torchvision_resnet18()
    rename = torchvision_rename("resnet18", torchvision)
    mapped = {rename[name]: value for name, value in torchvision.items()}
    report = compatibility(target, mapped)
    assert report["counts"] == {"copied": len(target), "remade": 0, "new": 0, "unused": 0}


def _torchvision_resnet18() -> dict[str, list[int]]:
    """torchvision.models.resnet18().state_dict()'s names and shapes (torchvision/models/resnet.py)."""
    def bn(prefix: str, c: int) -> dict[str, list[int]]:
        return {f"{prefix}.weight": [c], f"{prefix}.bias": [c], f"{prefix}.running_mean": [c],
                f"{prefix}.running_var": [c], f"{prefix}.num_batches_tracked": []}

    names = {"conv1.weight": [64, 3, 7, 7], **bn("bn1", 64)}
    inputs = 64
    for stage, channels in enumerate((64, 128, 256, 512), start=1):
        for block in (0, 1):
            prefix = f"layer{stage}.{block}"
            names[f"{prefix}.conv1.weight"] = [channels, inputs if block == 0 else channels, 3, 3]
            names.update(bn(f"{prefix}.bn1", channels))
            names[f"{prefix}.conv2.weight"] = [channels, channels, 3, 3]
            names.update(bn(f"{prefix}.bn2", channels))
            if block == 0 and stage > 1:
                names[f"{prefix}.downsample.0.weight"] = [channels, inputs, 1, 1]
                names.update(bn(f"{prefix}.downsample.1", channels))
        inputs = channels
    return {**names, "fc.weight": [1000, 512], "fc.bias": [1000]}


def test_it_maps_torchvision_alexnets_convolutions_onto_the_builtin():
    """torchvision/models/alexnet.py: features 0, 3, 6, 8, 10 convolutions (with biases), classifier 1, 4, 6."""
    shape = (3, 224, 224)
    convs = {"features.0": [64, 3, 11, 11], "features.3": [192, 64, 5, 5], "features.6": [384, 192, 3, 3],
             "features.8": [256, 384, 3, 3], "features.10": [256, 256, 3, 3]}
    linears = {"classifier.1": [4096, 9216], "classifier.4": [4096, 4096], "classifier.6": [1000, 4096]}
    index = {f"{name}.{kind}": (size if kind == "weight" else size[:1])
             for name, size in {**convs, **linears}.items() for kind in ("weight", "bias")}
    target = network_tensors(builtin_spec("alexnet", shape, 1000), shape, 1000)
    fitting = fitting_rename(torchvision_rename("alexnet", index), builtin_spec("alexnet", shape, 1000), shape, 1000,
                              index)

    report = compatibility(target, {fitting.get(name, name): size for name, size in index.items()})

    assert sorted(row["name"] for row in report["rows"] if row["action"] == "copied") == [
        "0.weight", "11.weight", "14.weight", "4.weight", "8.weight"]
    assert report["counts"]["remade"] == 0
