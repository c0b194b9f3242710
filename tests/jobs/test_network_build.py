"""Built torch models agree with the pure-Python summary: output, parameters, every layer's shape."""
from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from networks.builtin import BUILTIN_NETWORKS, builtin_spec
from networks.spec import NetworkSummary, SpecError, head_tasks, summarize
from training.torch.build import ResidualBlock, build_model

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64), (1, 16, 100)]
LARGE = (3, 224, 224)
# The segmentation built-ins have tests of their own (tests/networks/test_segmentation_networks.py).
CLASSIFIERS = sorted(n for n in BUILTIN_NETWORKS if head_tasks(builtin_spec(n, (1, 28, 28), 2)) == ("classification",))


def shapes_seen(model: nn.Module, summary: NetworkSummary, batch: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Each summary row's module output shape (per image) on a real forward pass."""
    seen: dict[str, tuple[int, ...]] = {}
    handles = [
        model.get_submodule(row.path).register_forward_hook(
            lambda _module, _inputs, output, path=row.path: seen.__setitem__(path, tuple(output.shape[1:]))
        )
        for row in summary.rows
    ]
    with torch.no_grad():
        output = model(batch)
    for handle in handles:
        handle.remove()
    seen["output"] = tuple(output.shape)
    return seen


def assert_matches_summary(spec: dict[str, Any], input_shape: tuple[int, int, int], num_classes: int) -> None:
    summary = summarize(spec, input_shape, num_classes)
    model = build_model(spec, input_shape, num_classes).eval()
    assert sum(p.numel() for p in model.parameters()) == summary.total_params
    seen = shapes_seen(model, summary, torch.randn(2, *input_shape))
    assert seen.pop("output") == (2, num_classes)
    assert seen == {row.path: row.output_shape for row in summary.rows}


@pytest.mark.parametrize("name", CLASSIFIERS)
@pytest.mark.parametrize("input_shape", SHAPES)
def test_every_builtin_builds_as_summarised(name: str, input_shape: tuple[int, int, int]) -> None:
    assert_matches_summary(builtin_spec(name, input_shape, 10), input_shape, 10)


@pytest.mark.parametrize("name", ["lenet", "alexnet", "resnet18"])
def test_the_convolutional_builtins_build_as_summarised_on_imagenet_sizes(name: str) -> None:
    assert_matches_summary(builtin_spec(name, LARGE, 2), LARGE, 2)


def custom_spec() -> dict[str, Any]:
    return {"layers": [
        {"type": "conv2d", "out_channels": 8, "kernel_size": [3, 5], "padding": [1, 2], "bias": False},
        {"type": "batchnorm2d"},
        {"type": "leaky_relu", "negative_slope": 0.1},
        {"type": "residual", "activation": None, "layers": [
            {"type": "conv2d", "out_channels": 8, "kernel_size": 4, "padding": "same", "groups": 2},
            {"type": "gelu"},
        ]},
        {"type": "residual", "layers": [
            {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "stride": [2, 1], "padding": 1},
            {"type": "elu"},
            {"type": "residual", "layers": [{"type": "dropout2d", "p": 0.1}, {"type": "tanh"}]},
            {"type": "avgpool2d", "kernel_size": 3, "stride": 2, "padding": 1},
        ]},
        {"type": "maxpool2d", "kernel_size": [2, 1]},
        {"type": "adaptive_avgpool2d", "output_size": [2, 3]},
        {"type": "flatten"},
        {"type": "batchnorm1d"},
        {"type": "linear", "out_features": 12},
        {"type": "sigmoid"},
        {"type": "dropout", "p": 0.2},
        {"type": "linear", "out_features": "num_classes", "bias": False},
    ]}


# An even kernel with "same" padding is allowed on purpose; torch only warns that it pads a copy.
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_every_layer_type_builds_as_summarised() -> None:
    assert_matches_summary(custom_spec(), (3, 20, 17), 4)


def test_it_projects_the_shortcut_only_when_the_shape_changes() -> None:
    model = build_model(custom_spec(), (3, 20, 17), 4)
    same, changed = model.get_submodule("3"), model.get_submodule("4")
    assert isinstance(same, ResidualBlock) and isinstance(same.shortcut, nn.Identity)
    assert isinstance(changed.shortcut, nn.Sequential)
    projection = changed.shortcut[0]
    # The body takes 20x17 to 5x9 (stride [2, 1] conv, then a stride-2 pool): strides 4 and 2 match it.
    assert (projection.kernel_size, projection.stride, projection.bias) == ((1, 1), (4, 2), None)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_a_residual_network_trains_one_step() -> None:
    torch.manual_seed(0)
    model = build_model(custom_spec(), (3, 20, 17), 4).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    images, labels = torch.randn(6, 3, 20, 17), torch.tensor([0, 1, 2, 3, 0, 1])
    before = [p.detach().clone() for p in model.parameters()]
    loss = nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())
    assert any(not torch.equal(old, new) for old, new in zip(before, model.parameters()))


def test_the_same_seed_gives_the_same_initial_weights() -> None:
    def weights(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return build_model(builtin_spec("resnet18", (3, 32, 32), 10), (3, 32, 32), 10).state_dict()

    first, again, other = weights(7), weights(7), weights(8)
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not all(torch.equal(first[key], other[key]) for key in first)


def test_it_validates_before_building() -> None:
    with pytest.raises(SpecError, match=r"Layer 0 \(linear\): expects a flat input"):
        build_model({"layers": [{"type": "linear", "out_features": "num_classes"}]}, (1, 28, 28), 10)
